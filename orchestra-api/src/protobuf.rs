//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`), decoded to JSON.
//!
//! The typed clientsets of client-go (and so `kubectl create deployment|namespace|configmap|
//! secret`) send request bodies as protobuf rather than JSON. [`decode`] turns such a body into
//! the JSON object that the same client would have sent as `application/json`, so the rest of the
//! server keeps reading JSON only.
//!
//! A body is the four magic bytes `k8s\0` followed by a `runtime.Unknown` envelope: its
//! `typeMeta` names the object's `apiVersion` and `kind`, and its `raw` bytes hold the object's
//! own message (for example `k8s.io.api.apps.v1.Deployment`).
//!
//! The message schemas come from the `k8s-rs-pb` crate (rust-protobuf types generated from
//! Kubernetes' `generated.proto` files, v1.33). Its reflection API cannot be used (its files list
//! themselves as their own dependencies, and the first descriptor lookup deadlocks), so each
//! supported kind is parsed into its generated type and that value is walked through its `serde`
//! implementation by a serializer of our own, which writes Kubernetes' JSON:
//!
//! - field names as in JSON (the `.proto` field names, without rust-protobuf's `_` suffix on
//!   keywords: `type_` is `type`, `ref_` is `$ref`);
//! - absent optional fields are omitted, present numbers and booleans are kept (`replicas: 0`);
//!   present empty strings, lists and maps are omitted like Go's `omitempty` would (Go's encoder
//!   writes every non-pointer field, so `""` is how an unset string arrives), except
//!   `storageClassName: ""`, which means "no class";
//! - `meta/v1` `Time` as RFC 3339 seconds (the zero time is omitted, as Go's JSON writes it
//!   `null`), `MicroTime` as RFC 3339 with microseconds (the generated types declare
//!   `MicroTime` fields as `Time`, so this is done for the `MicroTime` fields of the supported
//!   kinds by name: Lease `acquireTime`/`renewTime`, Event `eventTime`/`series.lastObservedTime`),
//!   `resource.Quantity` as its string, `IntOrString` as a number or a string, `RawExtension` as
//!   the embedded JSON, `bytes` (a Secret's `data`) as base64;
//! - the structs that Go embeds inline in JSON (`Probe.handler`, `Volume.volumeSource`,
//!   `PersistentVolumeSpec.persistentVolumeSource`,
//!   `EphemeralContainer.ephemeralContainerCommon`) merged into their parent.
//!
//! The kinds are listed in [`supported_kinds`]; `DeleteOptions` is accepted under any group
//! version. Not handled: `meta/v1` `Duration` fields (the generated `serde` code writes them as
//! nanoseconds, and none of the supported kinds has one), and protobuf bodies of custom resources
//! (Kubernetes never sends those).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use k8s_rs_pb::api::core::v1 as core;
use k8s_rs_pb::apimachinery::pkg::runtime::Unknown;
use k8s_rs_pb::apimachinery::pkg::util::intstr::IntOrString;
use protobuf::{Message, MessageField};
use serde::ser::{self, Impossible, Serialize};
use serde_json::{Map, Value};

/// The media type of Kubernetes' protobuf encoding.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with the magic bytes `k8s\0`.
    #[error("not a Kubernetes protobuf body: it does not start with the magic bytes \"k8s\\0\"")]
    MissingMagic,
    /// The `runtime.Unknown` envelope after the magic bytes is not valid.
    #[error("bad Kubernetes protobuf envelope (runtime.Unknown): {0}")]
    Envelope(String),
    /// The envelope names a kind this decoder has no schema for.
    #[error("unknown kind \"{api_version} {kind}\" in a protobuf body")]
    UnknownKind {
        /// The `apiVersion` of the envelope's `typeMeta`.
        api_version: String,
        /// The `kind` of the envelope's `typeMeta`.
        kind: String,
    },
    /// The object's own message is not a valid message of its kind.
    #[error("malformed protobuf {api_version} {kind}: {message}")]
    Malformed {
        /// The `apiVersion` of the object.
        api_version: String,
        /// The `kind` of the object.
        kind: String,
        /// What was wrong, with the field when known.
        message: String,
    },
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) to the object's JSON, with
/// `apiVersion` and `kind` from the envelope.
///
/// # Errors
///
/// [`ProtobufError`]: no magic bytes, a bad envelope, a kind without a known schema, or a
/// message that does not parse as its kind.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown =
        Unknown::parse_from_bytes(rest).map_err(|e| ProtobufError::Envelope(e.to_string()))?;
    if let Some(encoding) = unknown.contentEncoding.as_deref().filter(|e| !e.is_empty()) {
        return Err(ProtobufError::Envelope(format!(
            "unsupported contentEncoding {encoding:?}"
        )));
    }
    if let Some(content_type) = unknown
        .contentType
        .as_deref()
        .filter(|t| !t.is_empty() && *t != PROTOBUF)
    {
        return Err(ProtobufError::Envelope(format!(
            "unsupported contentType {content_type:?}"
        )));
    }
    let type_meta = unknown
        .typeMeta
        .as_ref()
        .ok_or_else(|| ProtobufError::Envelope("no typeMeta".to_owned()))?;
    let api_version = type_meta.apiVersion.clone().unwrap_or_default();
    let kind = type_meta.kind.clone().unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::Envelope(format!(
            "typeMeta lacks apiVersion or kind (apiVersion {api_version:?}, kind {kind:?})"
        )));
    }
    let raw = unknown.raw.as_deref().unwrap_or_default();
    let object = convert(&api_version, &kind, raw).map_err(|e| match e {
        Failure::Unknown => ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        },
        Failure::Malformed(message) => ProtobufError::Malformed {
            api_version: api_version.clone(),
            kind: kind.clone(),
            message,
        },
    })?;
    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), Value::String(api_version.clone()));
    out.insert("kind".to_owned(), Value::String(kind.clone()));
    match object {
        Value::Object(fields) => {
            for (k, v) in fields {
                if k != "apiVersion" && k != "kind" {
                    out.insert(k, v);
                }
            }
        }
        Value::Null => {}
        other => {
            return Err(ProtobufError::Malformed {
                api_version,
                kind,
                message: format!("decoded to a non-object {other}"),
            });
        }
    }
    Ok(Value::Object(out))
}

/// A conversion failure before the envelope's names are attached.
enum Failure {
    Unknown,
    Malformed(String),
}

/// Parses `raw` as the generated message `M`, applies `fix`, and writes it as JSON.
fn typed<M>(raw: &[u8], fix: fn(&mut M), post: fn(&M, &mut Value)) -> Result<Value, Failure>
where
    M: Message + Serialize,
{
    let mut message = M::parse_from_bytes(raw).map_err(|e| Failure::Malformed(e.to_string()))?;
    fix(&mut message);
    // The generated `serde` code of a few special types (Time, Quantity) unwraps; a hostile
    // message (a Quantity without its string, a time out of range) must not take the server down.
    let out = catch_unwind(AssertUnwindSafe(|| message.serialize(JsonSer)))
        .map_err(|_| Failure::Malformed("a Time or Quantity field holds an invalid value".into()))?
        .map_err(|e| Failure::Malformed(e.0))?;
    let mut value = out.into_value().unwrap_or(Value::Object(Map::new()));
    post(&message, &mut value);
    Ok(value)
}

/// No fix after serializing.
fn keep<M>(_: &M, _: &mut Value) {}

/// Writes a `MicroTime` field with its microseconds: the generated types hold `MicroTime`
/// fields as `Time`, whose serializer writes whole seconds.
fn set_micro(
    object: &mut Value,
    field: &str,
    time: &MessageField<k8s_rs_pb::apimachinery::pkg::apis::meta::v1::Time>,
) {
    let Some(time) = time.as_ref() else { return };
    let (seconds, nanos) = (time.seconds.unwrap_or(0), time.nanos.unwrap_or(0));
    let Some(object) = object.as_object_mut() else {
        return;
    };
    if seconds == 0 && nanos == 0 {
        object.remove(field);
    } else if let Ok(s) = micro_time(seconds, i64::from(nanos)) {
        object.insert(field.to_owned(), Value::String(s));
    }
}

/// No fix needed.
fn none<M>(_: &mut M) {}

macro_rules! kinds {
    (@post) => { keep };
    (@post $post:expr) => { $post };
    ($($gv:literal $kind:literal => $ty:ty, $fix:expr $(, $post:expr)?;)*) => {
        /// The `(apiVersion, kind)` pairs [`decode`] has a schema for (besides `DeleteOptions`,
        /// accepted under any group version).
        pub fn supported_kinds() -> &'static [(&'static str, &'static str)] {
            &[$(($gv, $kind)),*]
        }

        fn convert(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, Failure> {
            match (api_version, kind) {
                $(($gv, $kind) => typed::<$ty>(raw, $fix, kinds!(@post $($post)?)),)*
                (_, "DeleteOptions") => typed::<
                    k8s_rs_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions,
                >(raw, none, keep),
                _ => Err(Failure::Unknown),
            }
        }
    };
}

kinds! {
    "v1" "Pod" => core::Pod, |p| fix_opt_pod_spec(&mut p.spec);
    "v1" "Node" => core::Node, none;
    "v1" "Namespace" => core::Namespace, none;
    "v1" "Service" => core::Service, fix_service;
    "v1" "Endpoints" => core::Endpoints, none;
    "v1" "ServiceAccount" => core::ServiceAccount, none;
    "v1" "Secret" => core::Secret, none;
    "v1" "ConfigMap" => core::ConfigMap, none;
    "v1" "Event" => core::Event, none, |e, v| {
        set_micro(v, "eventTime", &e.eventTime);
        if let (Some(series), Some(out)) = (e.series.as_ref(), v.get_mut("series")) {
            set_micro(out, "lastObservedTime", &series.lastObservedTime);
        }
    };
    "v1" "ReplicationController" => core::ReplicationController,
        |r| if let Some(s) = r.spec.as_mut() { fix_template(&mut s.template) };
    "v1" "PodTemplate" => core::PodTemplate, |t| fix_template(&mut t.template);
    "v1" "Binding" => core::Binding, none;
    "v1" "PersistentVolume" => core::PersistentVolume, none;
    "v1" "PersistentVolumeClaim" => core::PersistentVolumeClaim, none;
    "v1" "LimitRange" => core::LimitRange, none;
    "v1" "ResourceQuota" => core::ResourceQuota, none;
    "apps/v1" "ReplicaSet" => k8s_rs_pb::api::apps::v1::ReplicaSet,
        |r| if let Some(s) = r.spec.as_mut() { fix_template(&mut s.template) };
    "apps/v1" "Deployment" => k8s_rs_pb::api::apps::v1::Deployment,
        |d| if let Some(s) = d.spec.as_mut() { fix_template(&mut s.template) };
    "apps/v1" "StatefulSet" => k8s_rs_pb::api::apps::v1::StatefulSet,
        |d| if let Some(s) = d.spec.as_mut() { fix_template(&mut s.template) };
    "apps/v1" "DaemonSet" => k8s_rs_pb::api::apps::v1::DaemonSet,
        |d| if let Some(s) = d.spec.as_mut() { fix_template(&mut s.template) };
    "apps/v1" "ControllerRevision" => k8s_rs_pb::api::apps::v1::ControllerRevision, none;
    "batch/v1" "Job" => k8s_rs_pb::api::batch::v1::Job,
        |j| if let Some(s) = j.spec.as_mut() { fix_template(&mut s.template) };
    "batch/v1" "CronJob" => k8s_rs_pb::api::batch::v1::CronJob, |c| {
        let job = c.spec.as_mut().and_then(|s| s.jobTemplate.as_mut());
        if let Some(j) = job.and_then(|t| t.spec.as_mut()) {
            fix_template(&mut j.template);
        }
    };
    "coordination.k8s.io/v1" "Lease" => k8s_rs_pb::api::coordination::v1::Lease, none, |l, v| {
        if let (Some(spec), Some(out)) = (l.spec.as_ref(), v.get_mut("spec")) {
            set_micro(out, "acquireTime", &spec.acquireTime);
            set_micro(out, "renewTime", &spec.renewTime);
        }
    };
    "scheduling.k8s.io/v1" "PriorityClass" =>
        k8s_rs_pb::api::scheduling::v1::PriorityClass, none;
    "autoscaling/v1" "Scale" => k8s_rs_pb::api::autoscaling::v1::Scale, none;
    "autoscaling/v1" "HorizontalPodAutoscaler" =>
        k8s_rs_pb::api::autoscaling::v1::HorizontalPodAutoscaler, none;
    "policy/v1" "Eviction" => k8s_rs_pb::api::policy::v1::Eviction, none;
    "policy/v1" "PodDisruptionBudget" => k8s_rs_pb::api::policy::v1::PodDisruptionBudget, none;
    "events.k8s.io/v1" "Event" => k8s_rs_pb::api::events::v1::Event, none, |e, v| {
        set_micro(v, "eventTime", &e.eventTime);
        if let (Some(series), Some(out)) = (e.series.as_ref(), v.get_mut("series")) {
            set_micro(out, "lastObservedTime", &series.lastObservedTime);
        }
    };
    "discovery.k8s.io/v1" "EndpointSlice" => k8s_rs_pb::api::discovery::v1::EndpointSlice, none;
    "networking.k8s.io/v1" "NetworkPolicy" => k8s_rs_pb::api::networking::v1::NetworkPolicy, none;
    "networking.k8s.io/v1" "Ingress" => k8s_rs_pb::api::networking::v1::Ingress, none;
    "rbac.authorization.k8s.io/v1" "Role" => k8s_rs_pb::api::rbac::v1::Role, none;
    "rbac.authorization.k8s.io/v1" "RoleBinding" => k8s_rs_pb::api::rbac::v1::RoleBinding, none;
    "rbac.authorization.k8s.io/v1" "ClusterRole" => k8s_rs_pb::api::rbac::v1::ClusterRole, none;
    "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" =>
        k8s_rs_pb::api::rbac::v1::ClusterRoleBinding, none;
    "storage.k8s.io/v1" "StorageClass" => k8s_rs_pb::api::storage::v1::StorageClass, none;
    "authorization.k8s.io/v1" "SelfSubjectAccessReview" =>
        k8s_rs_pb::api::authorization::v1::SelfSubjectAccessReview, none;
    "authorization.k8s.io/v1" "SubjectAccessReview" =>
        k8s_rs_pb::api::authorization::v1::SubjectAccessReview, none;
    "authorization.k8s.io/v1" "LocalSubjectAccessReview" =>
        k8s_rs_pb::api::authorization::v1::LocalSubjectAccessReview, none;
    "authorization.k8s.io/v1" "SelfSubjectRulesReview" =>
        k8s_rs_pb::api::authorization::v1::SelfSubjectRulesReview, none;
    "authentication.k8s.io/v1" "SelfSubjectReview" =>
        k8s_rs_pb::api::authentication::v1::SelfSubjectReview, none;
    "authentication.k8s.io/v1" "TokenRequest" =>
        k8s_rs_pb::api::authentication::v1::TokenRequest, none;
    "authentication.k8s.io/v1" "TokenReview" =>
        k8s_rs_pb::api::authentication::v1::TokenReview, none;
}

// The generated `serde` code writes a few `IntOrString` fields (HTTPGetAction.port,
// TCPSocketAction.port, ServicePort.targetPort) through a function that prefers `intVal`
// whenever it is present, and Go's encoder always writes `intVal` (0 for a string). These fixes
// keep only the member that `type` selects, before serializing.

/// Keeps the member of an `IntOrString` that its `type` selects.
fn fix_int_or_string(field: &mut MessageField<IntOrString>) {
    if let Some(value) = field.as_mut() {
        if value.type_ == Some(1) {
            value.intVal = None;
            if value.strVal.is_none() {
                value.strVal = Some(String::new());
            }
        } else {
            value.strVal = None;
            if value.intVal.is_none() {
                value.intVal = Some(0);
            }
        }
    }
}

fn fix_service(service: &mut core::Service) {
    if let Some(spec) = service.spec.as_mut() {
        for port in &mut spec.ports {
            fix_int_or_string(&mut port.targetPort);
        }
    }
}

fn fix_template(template: &mut MessageField<core::PodTemplateSpec>) {
    if let Some(template) = template.as_mut() {
        fix_opt_pod_spec(&mut template.spec);
    }
}

fn fix_opt_pod_spec(spec: &mut MessageField<core::PodSpec>) {
    let Some(spec) = spec.as_mut() else { return };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.initContainers.iter_mut())
    {
        fix_probe(&mut c.livenessProbe);
        fix_probe(&mut c.readinessProbe);
        fix_probe(&mut c.startupProbe);
        fix_lifecycle(&mut c.lifecycle);
    }
    for c in &mut spec.ephemeralContainers {
        if let Some(c) = c.ephemeralContainerCommon.as_mut() {
            fix_probe(&mut c.livenessProbe);
            fix_probe(&mut c.readinessProbe);
            fix_probe(&mut c.startupProbe);
            fix_lifecycle(&mut c.lifecycle);
        }
    }
}

fn fix_probe(probe: &mut MessageField<core::Probe>) {
    if let Some(handler) = probe.as_mut().and_then(|p| p.handler.as_mut()) {
        if let Some(h) = handler.httpGet.as_mut() {
            fix_int_or_string(&mut h.port);
        }
        if let Some(t) = handler.tcpSocket.as_mut() {
            fix_int_or_string(&mut t.port);
        }
    }
}

fn fix_lifecycle(lifecycle: &mut MessageField<core::Lifecycle>) {
    let Some(lifecycle) = lifecycle.as_mut() else {
        return;
    };
    for handler in [lifecycle.postStart.as_mut(), lifecycle.preStop.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(h) = handler.httpGet.as_mut() {
            fix_int_or_string(&mut h.port);
        }
        if let Some(t) = handler.tcpSocket.as_mut() {
            fix_int_or_string(&mut t.port);
        }
    }
}

/// The fields Go embeds inline in JSON: `(struct, field)`.
const INLINE: &[(&str, &str)] = &[
    ("Probe", "handler"),
    ("Volume", "volumeSource"),
    ("PersistentVolumeSpec", "persistentVolumeSource"),
    ("EphemeralContainer", "ephemeralContainerCommon"),
];

/// What the generated code's `Time` serializer writes for the zero `Time` (an empty message).
const ZERO_TIME: &str = "1970-01-01T00:00:00Z";

/// The result of serializing one value.
enum Out {
    /// Nothing: an absent optional field.
    Omit,
    /// An empty list (or empty `bytes`: the two look alike).
    EmptySeq,
    /// One `u8`: an element of a `bytes` field.
    Byte(u8),
    /// A `bytes` field.
    Bytes(Vec<u8>),
    /// Any other value.
    Val(Value),
}

impl Out {
    fn into_value(self) -> Option<Value> {
        match self {
            Out::Omit | Out::EmptySeq => None,
            Out::Byte(b) => Some(Value::from(b)),
            Out::Bytes(b) => Some(Value::String(
                base64::engine::general_purpose::STANDARD.encode(b),
            )),
            Out::Val(v) => Some(v),
        }
    }
}

/// A serializer error.
#[derive(Debug)]
struct SerError(String);

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError(msg.to_string())
    }
}

/// Writes the generated types' `serde` output as Kubernetes JSON.
struct JsonSer;

fn val(v: impl Into<Value>) -> Result<Out, SerError> {
    Ok(Out::Val(v.into()))
}

impl ser::Serializer for JsonSer {
    type Ok = Out;
    type Error = SerError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = Impossible<Out, SerError>;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = Impossible<Out, SerError>;

    fn serialize_bool(self, v: bool) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_i8(self, v: i8) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Out, SerError> {
        Ok(Out::Byte(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Out, SerError> {
        val(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_char(self, v: char) -> Result<Out, SerError> {
        val(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<Out, SerError> {
        val(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Out, SerError> {
        Ok(Out::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Out, SerError> {
        Ok(Out::Omit)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Out, SerError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Out, SerError> {
        Ok(Out::Omit)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Out, SerError> {
        Ok(Out::Omit)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Out, SerError> {
        val(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Out, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Result<Out, SerError> {
        Err(SerError(format!("unexpected enum value {name}::{variant}")))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, SerError> {
        Ok(SeqSer(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, SerError> {
        Ok(SeqSer(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSer, SerError> {
        Ok(SeqSer(Vec::with_capacity(len)))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(SerError(format!("unexpected enum value {name}::{variant}")))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapSer, SerError> {
        Ok(MapSer {
            map: Map::new(),
            key: None,
        })
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<StructSer, SerError> {
        Ok(StructSer {
            name,
            map: Map::new(),
            raw: None,
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(SerError(format!("unexpected enum value {name}::{variant}")))
    }
}

/// A list (or the bytes of a `bytes` field, told apart by their `u8` elements).
struct SeqSer(Vec<Out>);

impl SeqSer {
    fn finish(self) -> Out {
        if self.0.is_empty() {
            return Out::EmptySeq;
        }
        if self.0.iter().all(|o| matches!(o, Out::Byte(_))) {
            return Out::Bytes(
                self.0
                    .into_iter()
                    .filter_map(|o| match o {
                        Out::Byte(b) => Some(b),
                        _ => None,
                    })
                    .collect(),
            );
        }
        Out::Val(Value::Array(
            self.0.into_iter().filter_map(Out::into_value).collect(),
        ))
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Out;
    type Error = SerError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), SerError> {
        self.0.push(value.serialize(JsonSer)?);
        Ok(())
    }
    fn end(self) -> Result<Out, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Out;
    type Error = SerError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Out, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Out;
    type Error = SerError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Out, SerError> {
        Ok(self.finish())
    }
}

/// A protobuf map (labels, a ConfigMap's or Secret's data...): every entry is kept.
struct MapSer {
    map: Map<String, Value>,
    key: Option<String>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Out;
    type Error = SerError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), SerError> {
        let key = match key.serialize(JsonSer)? {
            Out::Val(Value::String(s)) => s,
            Out::Val(v) => v.to_string(),
            Out::Byte(b) => b.to_string(),
            _ => return Err(SerError("a map key that is not a string".to_owned())),
        };
        self.key = Some(key);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), SerError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| SerError("a map value without a key".to_owned()))?;
        let value = match value.serialize(JsonSer)? {
            // Empty `bytes` (a Secret's empty value) and an empty list look alike; maps of
            // lists do not occur in Kubernetes' messages.
            Out::EmptySeq => Value::String(String::new()),
            Out::Omit => Value::Null,
            other => other.into_value().unwrap_or(Value::Null),
        };
        self.map.insert(key, value);
        Ok(())
    }
    fn end(self) -> Result<Out, SerError> {
        if self.map.is_empty() {
            Ok(Out::Omit)
        } else {
            Ok(Out::Val(Value::Object(self.map)))
        }
    }
}

/// A message.
struct StructSer {
    name: &'static str,
    map: Map<String, Value>,
    /// A `RawExtension`'s bytes.
    raw: Option<Vec<u8>>,
}

impl ser::SerializeStruct for StructSer {
    type Ok = Out;
    type Error = SerError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        let out = value.serialize(JsonSer)?;
        let name = match key {
            "ref_" => "$ref",
            "schema" if self.name == "JSONSchemaProps" => "$schema",
            _ => key.strip_suffix('_').unwrap_or(key),
        };
        if self.name == "RawExtension" && name == "raw" {
            self.raw = match out {
                Out::Bytes(b) => Some(b),
                _ => None,
            };
            return Ok(());
        }
        let value = match out.into_value() {
            None => return Ok(()),
            Some(Value::String(s)) if s.is_empty() && name != "storageClassName" => {
                return Ok(());
            }
            Some(Value::String(s)) if s == ZERO_TIME => return Ok(()),
            Some(v) => v,
        };
        match value {
            Value::Object(inner) if INLINE.contains(&(self.name, name)) => self.map.extend(inner),
            value => {
                self.map.insert(name.to_owned(), value);
            }
        }
        Ok(())
    }
    fn end(self) -> Result<Out, SerError> {
        let int = |k: &str| self.map.get(k).and_then(Value::as_i64).unwrap_or(0);
        match self.name {
            "MicroTime" => {
                let (seconds, nanos) = (int("seconds"), int("nanos"));
                if seconds == 0 && nanos == 0 {
                    return Ok(Out::Omit);
                }
                micro_time(seconds, nanos).map(|s| Out::Val(Value::String(s)))
            }
            "IntOrString" => {
                if int("type") == 1 {
                    let s = self.map.get("strVal").and_then(Value::as_str);
                    val(s.unwrap_or_default())
                } else {
                    val(int("intVal"))
                }
            }
            "RawExtension" => match self.raw {
                None => Ok(Out::Omit),
                Some(raw) if raw.is_empty() => Ok(Out::Omit),
                Some(raw) => serde_json::from_slice::<Value>(&raw)
                    .map(Out::Val)
                    .map_err(|e| SerError(format!("a RawExtension that is not JSON: {e}"))),
            },
            _ => Ok(Out::Val(Value::Object(self.map))),
        }
    }
}

/// RFC 3339 with microseconds, as Kubernetes writes a `MicroTime`.
fn micro_time(seconds: i64, nanos: i64) -> Result<String, SerError> {
    let nanos = i32::try_from(nanos).map_err(|_| SerError(format!("MicroTime nanos {nanos}")))?;
    let ts = jiff::Timestamp::new(seconds, nanos)
        .map_err(|e| SerError(format!("MicroTime out of range: {e}")))?;
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", ts)
        .map_err(|e| SerError(format!("MicroTime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Request bodies captured from `kubectl` 1.32 (client-go typed clients), by a throwaway
    // HTTP server that answered discovery and saved each POST body.

    /// `kubectl create deployment hello --image=hello:1 --replicas=2 -- /bin/sleep 100`
    const DEPLOYMENT: &[u8] = b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xc7\x01\x0a\x23\x0a\x05hello\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0c\x0a\x03app\x12\x05hello\x12\x91\x01\x08\x02\x12\x0e\x0a\x0c\x0a\x03app\x12\x05hello\x1a\x75\x0a\x1e\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0c\x0a\x03app\x12\x05hello\x12\x53\x12\x35\x0a\x05hello\x12\x07hello:1\x1a\x0a/bin/sleep\x1a\x03100\x2a\x00\x42\x00\x6a\x00\x72\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x00\x32\x00\x42\x00\x4a\x00\x52\x00\x58\x00\x60\x00\x68\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00\x28\x00\x38\x00\x1a\x0c\x08\x00\x10\x00\x18\x00\x20\x00\x28\x00\x38\x00\x1a\x00\x22\x00";

    /// `kubectl create namespace t1`
    const NAMESPACE: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1a\x0a\x12\x0a\x02t1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";

    /// `kubectl create configmap c1 --from-literal=a=b`
    const CONFIGMAP: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1c\x0a\x12\x0a\x02c1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";

    /// `kubectl create secret generic s1 --from-literal=k=v`
    const SECRET: &[u8] = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x1e\x0a\x12\x0a\x02s1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01k\x12\x01v\x1a\x00\x1a\x00\x22\x00";

    /// `kubectl create service clusterip svc1 --tcp=80:http`
    const SERVICE: &[u8] = b"k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x6f\x0a\x21\x0a\x04svc1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0b\x0a\x03app\x12\x04svc1\x12\x46\x0a\x1e\x0a\x0780-http\x12\x03TCP\x18\x50\x22\x0a\x08\x01\x10\x00\x1a\x04http\x28\x00\x12\x0b\x0a\x03app\x12\x04svc1\x1a\x00\x22\x09ClusterIP\x3a\x00\x42\x00\x52\x00\x5a\x00\x60\x00\x68\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";

    fn decoded(body: &[u8]) -> Value {
        match decode(body) {
            Ok(v) => v,
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    #[test]
    fn protobuf_deployment_from_kubectl() {
        let d = decoded(DEPLOYMENT);
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(
            d["metadata"],
            json!({"name": "hello", "generation": 0, "labels": {"app": "hello"}})
        );
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["spec"]["selector"],
            json!({"matchLabels": {"app": "hello"}})
        );
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert_eq!(d["spec"]["minReadySeconds"], 0);
        let template = &d["spec"]["template"];
        assert_eq!(template["metadata"]["labels"], json!({"app": "hello"}));
        assert!(template["metadata"].get("creationTimestamp").is_none());
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["name"], "hello");
        assert_eq!(container["image"], "hello:1");
        assert_eq!(container["command"], json!(["/bin/sleep", "100"]));
        assert_eq!(container["resources"], json!({}));
        assert_eq!(container["tty"], false);
        assert!(container.get("imagePullPolicy").is_none());
        assert_eq!(template["spec"]["hostNetwork"], false);
        // Go writes every non-pointer string; "" is how an unset one arrives.
        assert!(template["spec"].get("schedulerName").is_none());
        assert!(template["spec"].get("restartPolicy").is_none());
        assert!(d["status"].get("conditions").is_none());
    }

    #[test]
    fn protobuf_namespace_from_kubectl() {
        let ns = decoded(NAMESPACE);
        assert_eq!(
            ns,
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "t1", "generation": 0},
                "spec": {},
                "status": {},
            })
        );
    }

    #[test]
    fn protobuf_configmap_from_kubectl() {
        let cm = decoded(CONFIGMAP);
        assert_eq!(
            cm,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c1", "generation": 0},
                "data": {"a": "b"},
            })
        );
    }

    #[test]
    fn protobuf_secret_data_is_base64() {
        let s = decoded(SECRET);
        assert_eq!(s["kind"], "Secret");
        assert_eq!(s["metadata"]["name"], "s1");
        assert_eq!(s["data"], json!({"k": "dg=="}));
        assert!(s.get("type").is_none());
    }

    #[test]
    fn protobuf_service_int_or_string_target_port() {
        let s = decoded(SERVICE);
        assert_eq!(s["kind"], "Service");
        assert_eq!(
            s["spec"]["ports"],
            json!([{"name": "80-http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 0}])
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["selector"], json!({"app": "svc1"}));
    }

    /// Encodes `message` (raw protobuf bytes of `kind`) in the envelope.
    fn envelope(api_version: &str, kind: &str, message: &[u8]) -> Vec<u8> {
        let mut unknown = Unknown::new();
        let mut tm = k8s_rs_pb::apimachinery::pkg::runtime::TypeMeta::new();
        tm.apiVersion = Some(api_version.to_owned());
        tm.kind = Some(kind.to_owned());
        unknown.typeMeta = MessageField::some(tm);
        unknown.raw = Some(message.to_vec());
        let mut body = MAGIC.to_vec();
        body.extend(unknown.write_to_bytes().unwrap());
        body
    }

    #[test]
    fn protobuf_special_types() {
        use k8s_rs_pb::api::coordination::v1 as coordination;
        use k8s_rs_pb::apimachinery::pkg::apis::meta::v1 as meta;
        let mut lease = coordination::Lease::new();
        let mut m = meta::ObjectMeta::new();
        m.name = Some("l".into());
        let mut t = meta::Time::new();
        t.seconds = Some(1_795_751_867); // 2026-11-27T03:57:47Z
        t.nanos = Some(0);
        m.creationTimestamp = MessageField::some(t);
        lease.metadata = MessageField::some(m);
        let mut spec = coordination::LeaseSpec::new();
        spec.holderIdentity = Some("me".into());
        spec.leaseDurationSeconds = Some(0);
        let mut mt = meta::Time::new(); // The crate types MicroTime fields as Time.
        mt.seconds = Some(1_795_751_867);
        mt.nanos = Some(123_456_789);
        spec.renewTime = MessageField::some(mt);
        lease.spec = MessageField::some(spec);
        let body = envelope(
            "coordination.k8s.io/v1",
            "Lease",
            &lease.write_to_bytes().unwrap(),
        );
        assert_eq!(
            decoded(&body),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "l", "creationTimestamp": "2026-11-27T03:57:47Z"},
                "spec": {
                    "holderIdentity": "me",
                    "leaseDurationSeconds": 0,
                    "renewTime": "2026-11-27T03:57:47.123456Z",
                },
            })
        );
    }

    #[test]
    fn protobuf_pod_inline_probe_quantity_raw_extension() {
        use k8s_rs_pb::api::apps::v1 as apps;
        use k8s_rs_pb::apimachinery::pkg::api::resource::Quantity;
        let mut container = core::Container::new();
        container.name = Some("c".into());
        let mut res = core::ResourceRequirements::new();
        let mut q = Quantity::new();
        q.string = Some("100Mi".into());
        res.limits.insert("memory".into(), q);
        container.resources = MessageField::some(res);
        let mut probe = core::Probe::new();
        let mut handler = core::ProbeHandler::new();
        let mut http = core::HTTPGetAction::new();
        let mut port = IntOrString::new();
        port.type_ = Some(0);
        port.intVal = Some(8080);
        port.strVal = Some(String::new());
        http.port = MessageField::some(port);
        handler.httpGet = MessageField::some(http);
        probe.handler = MessageField::some(handler);
        probe.periodSeconds = Some(3);
        container.livenessProbe = MessageField::some(probe);
        let mut volume = core::Volume::new();
        volume.name = Some("v".into());
        let mut source = core::VolumeSource::new();
        source.emptyDir = MessageField::some(core::EmptyDirVolumeSource::new());
        volume.volumeSource = MessageField::some(source);
        let mut spec = core::PodSpec::new();
        spec.containers.push(container);
        spec.volumes.push(volume);
        let mut pod = core::Pod::new();
        pod.spec = MessageField::some(spec);
        let pod_json = decoded(&envelope("v1", "Pod", &pod.write_to_bytes().unwrap()));
        assert_eq!(
            pod_json["spec"],
            json!({
                "containers": [{
                    "name": "c",
                    "resources": {"limits": {"memory": "100Mi"}},
                    "livenessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 3},
                }],
                "volumes": [{"name": "v", "emptyDir": {}}],
            })
        );

        let mut revision = apps::ControllerRevision::new();
        let mut raw = k8s_rs_pb::apimachinery::pkg::runtime::RawExtension::new();
        raw.raw = Some(br#"{"spec":{"x":1}}"#.to_vec());
        revision.data = MessageField::some(raw);
        revision.revision = Some(3);
        let rev = decoded(&envelope(
            "apps/v1",
            "ControllerRevision",
            &revision.write_to_bytes().unwrap(),
        ));
        assert_eq!(rev["data"], json!({"spec": {"x": 1}}));
        assert_eq!(rev["revision"], 3);
    }

    #[test]
    fn protobuf_delete_options_any_group() {
        use k8s_rs_pb::apimachinery::pkg::apis::meta::v1 as meta;
        let mut opts = meta::DeleteOptions::new();
        opts.gracePeriodSeconds = Some(0);
        opts.propagationPolicy = Some("Foreground".into());
        let bytes = opts.write_to_bytes().unwrap();
        for gv in ["v1", "meta.k8s.io/v1", "apps/v1"] {
            let d = decoded(&envelope(gv, "DeleteOptions", &bytes));
            assert_eq!(d["gracePeriodSeconds"], 0);
            assert_eq!(d["propagationPolicy"], "Foreground");
            assert_eq!(d["apiVersion"], gv);
        }
    }

    #[test]
    fn protobuf_errors_name_the_cause() {
        assert!(matches!(
            decode(b"{\"kind\":\"Pod\"}"),
            Err(ProtobufError::MissingMagic)
        ));
        assert!(matches!(
            decode(b"k8s\x00\xff\xff"),
            Err(ProtobufError::Envelope(_))
        ));
        let err = decode(&envelope("apps/v1", "Foo", b"")).unwrap_err();
        assert!(matches!(err, ProtobufError::UnknownKind { .. }));
        assert_eq!(
            err.to_string(),
            "unknown kind \"apps/v1 Foo\" in a protobuf body"
        );
        // Field 1 (metadata) claims 100 bytes that are not there.
        let err = decode(&envelope("v1", "Pod", b"\x0a\x64\x0a")).unwrap_err();
        assert!(matches!(err, ProtobufError::Malformed { .. }), "{err}");
        // A Quantity without its string makes the generated serializer unwrap None.
        let mut rq = core::ResourceQuota::new();
        let mut spec = core::ResourceQuotaSpec::new();
        spec.hard.insert(
            "cpu".into(),
            k8s_rs_pb::apimachinery::pkg::api::resource::Quantity::new(),
        );
        rq.spec = MessageField::some(spec);
        let err = decode(&envelope(
            "v1",
            "ResourceQuota",
            &rq.write_to_bytes().unwrap(),
        ))
        .unwrap_err();
        assert!(matches!(err, ProtobufError::Malformed { .. }), "{err}");
    }

    #[test]
    fn protobuf_rbac_kinds_round_trip() {
        use k8s_rs_pb::api::rbac::v1 as rbac;
        use k8s_rs_pb::apimachinery::pkg::apis::meta::v1 as meta;
        use orchestra_core::k8s::api::rbac::v1 as typed;
        use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1 as typed_meta;

        const GV: &str = "rbac.authorization.k8s.io/v1";
        let strings =
            |values: &[&str]| -> Vec<String> { values.iter().map(|v| (*v).to_owned()).collect() };
        let metadata = |name: &str, namespace: &str| {
            let mut m = meta::ObjectMeta::new();
            m.name = Some(name.into());
            // Go writes every string; "" is how an unset namespace arrives.
            m.namespace = Some(namespace.into());
            MessageField::some(m)
        };
        let typed_metadata = |name: &str, namespace: Option<&str>| typed_meta::ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(str::to_owned),
            ..typed_meta::ObjectMeta::default()
        };
        let mut resource_rule = rbac::PolicyRule::new();
        resource_rule.verbs = strings(&["get", "list"]);
        resource_rule.apiGroups = strings(&[""]);
        resource_rule.resources = strings(&["pods", "pods/log"]);
        resource_rule.resourceNames = strings(&["web"]);
        let mut url_rule = rbac::PolicyRule::new();
        url_rule.verbs = strings(&["get"]);
        url_rule.nonResourceURLs = strings(&["/healthz", "/apis/*"]);
        let typed_resource_rule = typed::PolicyRule {
            verbs: strings(&["get", "list"]),
            // The core group's "" survives: it is an item of a list, not an unset string.
            api_groups: Some(strings(&[""])),
            resources: Some(strings(&["pods", "pods/log"])),
            resource_names: Some(strings(&["web"])),
            non_resource_urls: None,
        };
        let typed_url_rule = typed::PolicyRule {
            verbs: strings(&["get"]),
            non_resource_urls: Some(strings(&["/healthz", "/apis/*"])),
            ..typed::PolicyRule::default()
        };

        let mut role = rbac::Role::new();
        role.metadata = metadata("pod-reader", "default");
        role.rules.push(resource_rule.clone());
        let role = decoded(&envelope(GV, "Role", &role.write_to_bytes().unwrap()));
        assert_eq!(role["apiVersion"], GV);
        assert_eq!(role["kind"], "Role");
        assert_eq!(role["rules"][0]["apiGroups"], json!([""]));
        assert_eq!(
            serde_json::from_value::<typed::Role>(role).ok(),
            Some(typed::Role {
                metadata: typed_metadata("pod-reader", Some("default")),
                rules: Some(vec![typed_resource_rule.clone()]),
            })
        );

        let mut cluster_role = rbac::ClusterRole::new();
        cluster_role.metadata = metadata("system:monitoring", "");
        cluster_role.rules.push(resource_rule);
        cluster_role.rules.push(url_rule);
        let mut aggregation = rbac::AggregationRule::new();
        let mut selector = meta::LabelSelector::new();
        selector.matchLabels.insert(
            "rbac.example.com/aggregate-to-monitoring".into(),
            "true".into(),
        );
        aggregation.clusterRoleSelectors.push(selector);
        cluster_role.aggregationRule = MessageField::some(aggregation);
        let cluster_role = decoded(&envelope(
            GV,
            "ClusterRole",
            &cluster_role.write_to_bytes().unwrap(),
        ));
        assert_eq!(
            serde_json::from_value::<typed::ClusterRole>(cluster_role).ok(),
            Some(typed::ClusterRole {
                metadata: typed_metadata("system:monitoring", None),
                rules: Some(vec![typed_resource_rule, typed_url_rule]),
                aggregation_rule: Some(typed::AggregationRule {
                    cluster_role_selectors: Some(vec![typed_meta::LabelSelector {
                        match_labels: Some(
                            [(
                                "rbac.example.com/aggregate-to-monitoring".to_owned(),
                                "true".to_owned(),
                            )]
                            .into(),
                        ),
                        match_expressions: None,
                    }]),
                }),
            })
        );

        let role_ref = |kind: &str, name: &str| {
            let mut r = rbac::RoleRef::new();
            r.apiGroup = Some("rbac.authorization.k8s.io".into());
            r.kind = Some(kind.into());
            r.name = Some(name.into());
            MessageField::some(r)
        };
        let typed_role_ref = |kind: &str, name: &str| typed::RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: name.into(),
        };
        let subject = |kind: &str, api_group: &str, name: &str, namespace: &str| {
            let mut s = rbac::Subject::new();
            s.kind = Some(kind.into());
            s.apiGroup = Some(api_group.into());
            s.name = Some(name.into());
            s.namespace = Some(namespace.into());
            s
        };
        let subjects = vec![
            subject("User", "rbac.authorization.k8s.io", "alice", ""),
            subject("ServiceAccount", "", "builder", "ci"),
        ];
        let typed_subjects = vec![
            typed::Subject {
                kind: "User".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                name: "alice".into(),
                namespace: None,
            },
            typed::Subject {
                kind: "ServiceAccount".into(),
                api_group: None,
                name: "builder".into(),
                namespace: Some("ci".into()),
            },
        ];

        let mut binding = rbac::RoleBinding::new();
        binding.metadata = metadata("readers", "default");
        binding.roleRef = role_ref("Role", "pod-reader");
        binding.subjects = subjects.clone();
        let binding = decoded(&envelope(
            GV,
            "RoleBinding",
            &binding.write_to_bytes().unwrap(),
        ));
        assert_eq!(
            serde_json::from_value::<typed::RoleBinding>(binding).ok(),
            Some(typed::RoleBinding {
                metadata: typed_metadata("readers", Some("default")),
                role_ref: typed_role_ref("Role", "pod-reader"),
                subjects: Some(typed_subjects.clone()),
            })
        );

        let mut cluster_binding = rbac::ClusterRoleBinding::new();
        cluster_binding.metadata = metadata("system:monitoring", "");
        cluster_binding.roleRef = role_ref("ClusterRole", "system:monitoring");
        cluster_binding.subjects = subjects;
        let cluster_binding = decoded(&envelope(
            GV,
            "ClusterRoleBinding",
            &cluster_binding.write_to_bytes().unwrap(),
        ));
        assert_eq!(
            cluster_binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:monitoring"})
        );
        assert_eq!(
            serde_json::from_value::<typed::ClusterRoleBinding>(cluster_binding).ok(),
            Some(typed::ClusterRoleBinding {
                metadata: typed_metadata("system:monitoring", None),
                role_ref: typed_role_ref("ClusterRole", "system:monitoring"),
                subjects: Some(typed_subjects),
            })
        );
    }

    #[test]
    fn protobuf_supported_kinds_cover_the_brief() {
        for (gv, kind) in [
            ("v1", "Pod"),
            ("v1", "Node"),
            ("v1", "Binding"),
            ("apps/v1", "Deployment"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("autoscaling/v1", "Scale"),
            ("policy/v1", "Eviction"),
        ] {
            assert!(supported_kinds().contains(&(gv, kind)), "{gv} {kind}");
            // An empty message is a valid (empty) object of every kind.
            let v = decoded(&envelope(gv, kind, b""));
            assert_eq!(v, json!({"apiVersion": gv, "kind": kind}));
        }
    }
}
