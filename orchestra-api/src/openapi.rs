//! The OpenAPI v3 documents the API server serves, as `kubectl explain` and client-side
//! `kubectl apply` read them.
//!
//! Kubernetes serves one OpenAPI 3.0 document per group-version (`/openapi/v3/api/v1`,
//! `/openapi/v3/apis/apps/v1`, ...) and an index of them at `/openapi/v3`, each entry naming its
//! document by a `serverRelativeURL` that carries the document's hash, so that clients cache
//! documents until the hash changes. [`OpenApi`] builds all of them once from a [`Scheme`] and
//! keeps them serialized; the server hands out bytes.
//!
//! # From JSON schemas to Kubernetes' components
//!
//! A kind's schema in the scheme is a JSON schema (draft 2020-12, through schemars) with the types
//! it refers to under `$defs`. k8s-openapi names its definitions as Kubernetes names its OpenAPI
//! components (`io.k8s.api.apps.v1.DeploymentStrategy`,
//! `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`), so those names are kept as they are:
//! `kubectl explain` prints the last dot-separated segment of a reference as the field's type
//! (`<DeploymentStrategy>`). The rules:
//!
//! * A definition whose name contains a dot is a component of that name, and a reference to it
//!   becomes `#/components/schemas/<name>`, wrapped as `allOf: [{$ref}]` when the reference has a
//!   description or default beside it, as Kubernetes does.
//! * The kind itself is the component named by its schema's title when that is a Kubernetes name
//!   (`io.k8s.*`); otherwise (custom kinds) it is `<reversed group>.<version>.<Kind>`, as Kubernetes
//!   names the components of custom resource definitions (`com.example.stable.v1.CronTab`).
//! * Definitions without a dot (a custom kind's own Rust types: `CronTabSpec`) are inlined, as
//!   in a custom resource definition's structural schema; only a type that refers to itself
//!   becomes a component, `<reversed group>.<version>.<name>`.
//! * JSON-schema forms OpenAPI 3.0 lacks are rewritten: `type: [T, "null"]` and `anyOf` with a
//!   `null` branch become `T` with `nullable: true`, `const` becomes a one-value `enum`, a `oneOf`
//!   of constants an `enum`, and Rust integer formats (`uint16`, `uint64`) Kubernetes' `int32` and
//!   `int64`.
//! * `IntOrString` and `Quantity` take the shapes Kubernetes gives them in OpenAPI v3: no `type`,
//!   but `oneOf: [{type: integer}, {type: string}]` with `format: int-or-string`, and `oneOf:
//!   [{type: string}, {type: number}]` (so that `kubectl explain` prints `<IntOrString>` and
//!   `<map[string]Quantity>`).
//!
//! Each kind's component carries `x-kubernetes-group-version-kind`. Every field the kind's
//! [`MergeKeys`] table names gets `x-kubernetes-patch-strategy` (`merge`, `replace`, `retainKeys`,
//! or a comma-separated pair) and `x-kubernetes-patch-merge-key`, on the component that holds the
//! field (`io.k8s.api.core.v1.PodSpec`'s `containers`), so that client-side `kubectl apply`
//! computes strategic merge patches as it does against Kubernetes. The `x-kubernetes-list-type`
//! and `x-kubernetes-list-map-keys` of the built-in kinds, and the `enum`s of their string
//! fields, are not in k8s-openapi's schemas; a table here adds those of the fields the built-in
//! kinds use most (see [`LIST_TYPES`] and [`ENUMS`]). A custom kind's own extensions are kept.
//!
//! Each document also holds, for each kind, its list kind (`io.k8s.api.apps.v1.DeploymentList`),
//! `ListMeta`, `Status` and `DeleteOptions`, and the collection and item paths of its resource with
//! `get`, `post`, `put`, `patch` and `delete` operations named as Kubernetes names them
//! (`listAppsV1NamespacedDeployment`, `patchCoreV1NamespacedPodStatus`).
//!
//! # Examples
//!
//! ```
//! use orchestra_api::openapi::OpenApi;
//! use orchestra_core::scheme::Scheme;
//!
//! let openapi = OpenApi::new(&Scheme::default());
//! let index: serde_json::Value = serde_json::from_slice(openapi.index())?;
//! let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap_or_default();
//! assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
//!
//! let document: serde_json::Value =
//!     serde_json::from_slice(openapi.document("apis/apps/v1").unwrap_or_default())?;
//! let strategy = &document["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
//!     ["properties"]["strategy"];
//! assert_eq!(
//!     strategy["allOf"][0]["$ref"],
//!     "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
//! );
//! assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Status};
use orchestra_core::patch::{FieldStrategy, MergeKeys, PatchStrategy};
use orchestra_core::resource::ApiResource;
use orchestra_core::schema::schema_for;
use orchestra_core::scheme::Scheme;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The `info.version` of every document: the Kubernetes version whose API the built-in kinds
/// follow (k8s-openapi's `v1_33`).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Where the documents are served; the index's URLs start with it.
const PREFIX: &str = "/openapi/v3/";

/// Where a reference to a component points.
const COMPONENTS: &str = "#/components/schemas/";

/// Where schemars puts the definitions a schema refers to.
const DEFS: &str = "#/$defs/";

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// `x-kubernetes-list-type` (and `x-kubernetes-list-map-keys` for `map` lists) of fields of the
/// built-in kinds, as `(component, field, list type, map keys)`: those of the lists Orchestra's
/// merge-key tables name, and the atomic lists of the RBAC kinds (a patch replaces a role's
/// `rules` and a binding's `subjects` whole), from the `+listType`/`+listMapKey` tags of
/// Kubernetes' Go types.
pub const LIST_TYPES: &[(&str, &str, &str, &[&str])] = &[
    (OBJECT_META, "finalizers", "set", &[]),
    ("io.k8s.api.rbac.v1.Role", "rules", "atomic", &[]),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", "atomic", &[]),
    (
        "io.k8s.api.rbac.v1.AggregationRule",
        "clusterRoleSelectors",
        "atomic",
        &[],
    ),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "atomic", &[]),
    ("io.k8s.api.rbac.v1.PolicyRule", "resources", "atomic", &[]),
    (
        "io.k8s.api.rbac.v1.PolicyRule",
        "resourceNames",
        "atomic",
        &[],
    ),
    (
        "io.k8s.api.rbac.v1.PolicyRule",
        "nonResourceURLs",
        "atomic",
        &[],
    ),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", "atomic", &[]),
    (
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
        "subjects",
        "atomic",
        &[],
    ),
    (OBJECT_META, "ownerReferences", "map", &["uid"]),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "map",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "map",
        &["port", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "clusterIPs",
        "atomic",
        &[],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ipFamilies",
        "atomic",
        &[],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "map",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "map",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "map",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "map",
        &["type"],
    ),
];

/// The values of string fields of the built-in kinds that Kubernetes' OpenAPI documents give as
/// `enum` (k8s-openapi leaves them out), as `(component, field, values)`; for a list of strings the
/// values are those of its items.
pub const ENUMS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.apps.v1.DeploymentStrategy",
        "type",
        &["Recreate", "RollingUpdate"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "terminationMessagePolicy",
        &["FallbackToLogsOnError", "File"],
    ),
    (
        "io.k8s.api.core.v1.ContainerPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.ServicePort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.EndpointPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "restartPolicy",
        &["Always", "Never", "OnFailure"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "dnsPolicy",
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "preemptionPolicy",
        &["Never", "PreemptLowerPriority"],
    ),
    (
        "io.k8s.api.scheduling.v1.PriorityClass",
        "preemptionPolicy",
        &["Never", "PreemptLowerPriority"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "phase",
        &["Failed", "Pending", "Running", "Succeeded", "Unknown"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "qosClass",
        &["BestEffort", "Burstable", "Guaranteed"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "sessionAffinity",
        &["ClientIP", "None"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "externalTrafficPolicy",
        &["Cluster", "Local"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "internalTrafficPolicy",
        &["Cluster", "Local"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ipFamilyPolicy",
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ipFamilies",
        &["IPv4", "IPv6"],
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "phase",
        &["Active", "Terminating"],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "phase",
        &["Pending", "Running", "Terminated"],
    ),
    (
        "io.k8s.api.core.v1.Taint",
        "effect",
        &["NoExecute", "NoSchedule", "PreferNoSchedule"],
    ),
    (
        "io.k8s.api.core.v1.Toleration",
        "effect",
        &["NoExecute", "NoSchedule", "PreferNoSchedule"],
    ),
    (
        "io.k8s.api.core.v1.Toleration",
        "operator",
        &["Equal", "Exists"],
    ),
    (
        "io.k8s.api.core.v1.NodeSelectorRequirement",
        "operator",
        &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
    ),
    (
        "io.k8s.api.core.v1.HTTPGetAction",
        "scheme",
        &["HTTP", "HTTPS"],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "whenUnsatisfiable",
        &["DoNotSchedule", "ScheduleAnyway"],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "nodeAffinityPolicy",
        &["Honor", "Ignore"],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "nodeTaintsPolicy",
        &["Honor", "Ignore"],
    ),
    (
        "io.k8s.api.core.v1.SeccompProfile",
        "type",
        &["Localhost", "RuntimeDefault", "Unconfined"],
    ),
    (
        "io.k8s.api.core.v1.VolumeMount",
        "mountPropagation",
        &["Bidirectional", "HostToContainer", "None"],
    ),
];

/// One served document: its JSON and the hash naming it in the index.
#[derive(Clone, Debug)]
struct Served {
    hash: String,
    bytes: Vec<u8>,
}

/// The OpenAPI v3 index and per-group-version documents of a scheme's kinds, serialized once; see
/// the [module documentation](self).
#[derive(Clone, Debug)]
pub struct OpenApi {
    index: Vec<u8>,
    documents: BTreeMap<String, Served>,
    v2: Vec<u8>,
}

impl OpenApi {
    /// Builds the documents of every kind `scheme` registers, grouped by group-version.
    ///
    /// ```
    /// use orchestra_api::openapi::OpenApi;
    /// use orchestra_core::scheme::Scheme;
    ///
    /// let openapi = OpenApi::new(&Scheme::default());
    /// assert!(openapi.group_versions().any(|path| path == "api/v1"));
    /// assert!(openapi.document("apis/apps/v1").is_some());
    /// assert!(openapi.document("apis/nothing/v1").is_none());
    /// ```
    pub fn new(scheme: &Scheme) -> OpenApi {
        let mut builders: BTreeMap<String, DocumentBuilder> = BTreeMap::new();
        for resource in scheme.resources() {
            let Some(schema) = scheme.schema(&resource.api_version, &resource.kind) else {
                continue;
            };
            let builder = builders.entry(group_version_path(resource)).or_default();
            builder.add_kind(resource, schema.to_value());
            builder.add_paths(resource, scheme.has_status_subresource(resource));
        }
        let mut documents = BTreeMap::new();
        let mut index = Map::new();
        let mut v2 = SwaggerV2::default();
        for (path, builder) in builders {
            let document = builder.finish();
            v2.add(&document);
            let bytes = serde_json::to_vec(&document).unwrap_or_default();
            let hash = hex_sha256(&bytes);
            index.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("{PREFIX}{path}?hash={hash}")}),
            );
            documents.insert(path, Served { hash, bytes });
        }
        let index = serde_json::to_vec(&json!({ "paths": index })).unwrap_or_default();
        OpenApi {
            index,
            documents,
            v2: serde_json::to_vec(&v2.finish()).unwrap_or_default(),
        }
    }

    /// The whole API as one OpenAPI v2 (Swagger 2.0) document, served at `GET /openapi/v2`: the
    /// v3 documents' paths and schemas in v2's form (`definitions`, body parameters,
    /// `format: int-or-string` for `IntOrString`), for clients that still read v2.
    pub fn v2(&self) -> &[u8] {
        &self.v2
    }

    /// The index served at `GET /openapi/v3`: `{"paths": {"apis/apps/v1": {"serverRelativeURL":
    /// "/openapi/v3/apis/apps/v1?hash=<HEX>"}, ...}}`.
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// The document of one group-version, served at `GET /openapi/v3/<path>`: `path` is `api/v1`
    /// for the core group and `apis/<group>/<version>` for the others (a leading `/` is ignored).
    /// `None` for a group-version with no kind.
    pub fn document(&self, group_version_path: &str) -> Option<&[u8]> {
        self.served(group_version_path)
            .map(|served| served.bytes.as_slice())
    }

    /// The hash of a group-version's document (upper-case hex SHA-256), as its index entry's
    /// `?hash=` names it: a request with that hash may be cached for good (Kubernetes answers it
    /// with `Cache-Control: public, immutable`), and it serves as the document's `ETag`.
    pub fn hash(&self, group_version_path: &str) -> Option<&str> {
        self.served(group_version_path)
            .map(|served| served.hash.as_str())
    }

    /// The group-version paths that have a document (`api/v1`, `apis/apps/v1`, ...), sorted.
    pub fn group_versions(&self) -> impl Iterator<Item = &str> {
        self.documents.keys().map(String::as_str)
    }

    fn served(&self, group_version_path: &str) -> Option<&Served> {
        self.documents
            .get(group_version_path.trim_start_matches('/'))
    }
}

/// Upper-case hex SHA-256 of `bytes`.
fn hex_sha256(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes).iter() {
        let _ = write!(hex, "{byte:02X}");
    }
    hex
}

/// `api/v1`, or `apis/<group>/<version>`.
fn group_version_path(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    }
}

/// The prefix of the components of a custom kind: `<reversed group>.<version>`
/// (`com.example.stable.v1`).
fn custom_prefix(resource: &ApiResource) -> String {
    let mut parts: Vec<&str> = resource
        .group
        .split('.')
        .filter(|part| !part.is_empty())
        .rev()
        .collect();
    parts.push(&resource.version);
    parts.join(".")
}

/// The `group`, `version` and `kind` of an `x-kubernetes-group-version-kind`.
fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The components and paths of one group-version's document, while they are gathered.
#[derive(Debug, Default)]
struct DocumentBuilder {
    components: BTreeMap<String, Value>,
    paths: Map<String, Value>,
    /// The merge strategies to set, as (component, JSON pointer in it, strategy).
    strategies: Vec<(String, String, FieldStrategy)>,
}

impl DocumentBuilder {
    /// Adds a kind's component, the components it refers to, and its list kind.
    fn add_kind(&mut self, resource: &ApiResource, schema: Value) {
        let root_title = schema
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let prefix = custom_prefix(resource);
        let root_name = match &root_title {
            Some(title) if title.starts_with("io.k8s.") => title.clone(),
            _ => format!("{prefix}.{}", resource.kind),
        };
        let defs = schema
            .get("$defs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut converter = Converter {
            defs: &defs,
            root_title: root_title.as_deref(),
            root_name: &root_name,
            prefix: &prefix,
            components: &mut self.components,
            inlining: Vec::new(),
        };
        let mut root = converter.convert(&schema);
        if let Some(object) = root.as_object_mut() {
            // Kubernetes' kinds require no field in their schemas; k8s-openapi's require
            // `metadata`, which is a Rust field without `Option`.
            if let Some(Value::Array(required)) = object.get_mut("required") {
                required.retain(|field| field != "metadata");
                if required.is_empty() {
                    object.remove("required");
                }
            }
            let entry = object
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            let this = gvk(&resource.group, &resource.version, &resource.kind);
            if let Value::Array(kinds) = entry
                && !kinds.contains(&this)
            {
                kinds.push(this);
            }
        }
        self.components.insert(root_name.clone(), root);
        self.add_meta_components();
        self.add_list_kind(resource, &root_name);
        if let Some(keys) = MergeKeys::for_resource(resource) {
            let mut walk = StrategyWalk {
                components: &self.components,
                keys: &keys,
                stack: vec![root_name.clone()],
                found: Vec::new(),
            };
            if let Some(root) = self.components.get(&root_name) {
                walk.walk(root, &root_name, String::new(), "");
            }
            let found = walk.found;
            self.strategies.extend(found);
        }
    }

    /// `ListMeta`, `Status` and `DeleteOptions`, which the paths refer to.
    fn add_meta_components(&mut self) {
        if self.components.contains_key(STATUS) {
            return;
        }
        for schema in [
            schema_for::<ListMeta>(),
            schema_for::<Status>(),
            schema_for::<DeleteOptions>(),
        ] {
            let schema = schema.to_value();
            let Some(title) = schema.get("title").and_then(Value::as_str) else {
                continue;
            };
            let title = title.to_owned();
            let defs = schema
                .get("$defs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut converter = Converter {
                defs: &defs,
                root_title: Some(&title),
                root_name: &title,
                prefix: "",
                components: &mut self.components,
                inlining: Vec::new(),
            };
            let converted = converter.convert(&schema);
            self.components.insert(title, converted);
        }
    }

    /// The list kind of a kind (`DeploymentList`), as Kubernetes describes it.
    fn add_list_kind(&mut self, resource: &ApiResource, root_name: &str) {
        let list_kind = format!("{}List", resource.kind);
        let name = format!("{root_name}List");
        let object = self.components.get(root_name);
        let api_version = object
            .and_then(|o| o.pointer("/properties/apiVersion"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}));
        let kind = object
            .and_then(|o| o.pointer("/properties/kind"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}));
        let list = json!({
            "description": format!("{list_kind} is a list of {}.", resource.kind),
            "type": "object",
            "properties": {
                "apiVersion": api_version,
                "items": {
                    "description": format!("List of {}.", resource.plural),
                    "type": "array",
                    "items": {"allOf": [{"$ref": format!("{COMPONENTS}{root_name}")}], "default": {}},
                },
                "kind": kind,
                "metadata": {
                    "allOf": [{"$ref": format!("{COMPONENTS}{LIST_META}")}],
                    "default": {},
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                },
            },
            "required": ["items"],
            "x-kubernetes-group-version-kind": [gvk(&resource.group, &resource.version, &list_kind)],
        });
        self.components.insert(name, list);
    }

    /// The collection, item (and status) paths of a resource.
    fn add_paths(&mut self, resource: &ApiResource, status: bool) {
        let root = if resource.group.is_empty() {
            format!("/api/{}", resource.version)
        } else {
            format!("/apis/{}/{}", resource.group, resource.version)
        };
        let root_name = self
            .components
            .iter()
            .find(|(_, schema)| {
                schema
                    .get("x-kubernetes-group-version-kind")
                    .and_then(Value::as_array)
                    .is_some_and(|kinds| {
                        kinds.contains(&gvk(&resource.group, &resource.version, &resource.kind))
                    })
            })
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        let names = OperationNames::new(resource);
        let object = json!({"$ref": format!("{COMPONENTS}{root_name}")});
        let list = json!({"$ref": format!("{COMPONENTS}{root_name}List")});
        let status_ref = json!({"$ref": format!("{COMPONENTS}{STATUS}")});
        let gvk = gvk(&resource.group, &resource.version, &resource.kind);
        let strategic = MergeKeys::for_resource(resource).is_some();
        let operation = |action: &str, verb: &str, suffix: &str, response: &Value| {
            let mut operation = json!({
                "description": format!("{verb} {}", resource.kind),
                "operationId": format!("{verb}{}{suffix}", names.group_version),
                "responses": {
                    "200": {"description": "OK", "content": {
                        "application/json": {"schema": response},
                        "application/yaml": {"schema": response},
                    }},
                    "401": {"description": "Unauthorized"},
                },
                "tags": [names.tag],
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            });
            if let Some(fields) = operation.as_object_mut() {
                // The query parameters the server takes: kubectl's client-side checks look for
                // `fieldValidation` and `dryRun` here before relying on the server for them.
                let names: &[&str] = match action {
                    "post" | "put" => &["dryRun", "fieldManager", "fieldValidation", "pretty"],
                    "patch" => &[
                        "dryRun",
                        "fieldManager",
                        "fieldValidation",
                        "force",
                        "pretty",
                    ],
                    "delete" => &[
                        "dryRun",
                        "gracePeriodSeconds",
                        "propagationPolicy",
                        "pretty",
                    ],
                    "deletecollection" => &[
                        "dryRun",
                        "gracePeriodSeconds",
                        "propagationPolicy",
                        "labelSelector",
                        "fieldSelector",
                    ],
                    "list" => &[
                        "labelSelector",
                        "fieldSelector",
                        "limit",
                        "continue",
                        "resourceVersion",
                        "resourceVersionMatch",
                        "watch",
                        "allowWatchBookmarks",
                        "timeoutSeconds",
                        "pretty",
                    ],
                    _ => &["pretty"],
                };
                fields.insert(
                    "parameters".into(),
                    Value::Array(names.iter().map(|name| query_parameter(name)).collect()),
                );
                match action {
                    "post" | "put" => {
                        fields.insert(
                            "requestBody".into(),
                            json!({"required": true, "content": {
                                "application/json": {"schema": object},
                                "application/yaml": {"schema": object},
                            }}),
                        );
                    }
                    "patch" => {
                        let patch = json!({"schema": {"type": "object"}});
                        let mut content = Map::new();
                        content.insert("application/json-patch+json".into(), patch.clone());
                        content.insert("application/merge-patch+json".into(), patch.clone());
                        // Kubernetes takes strategic merge patches for its built-in kinds
                        // only: those with a merge-key table.
                        if strategic {
                            content.insert(
                                "application/strategic-merge-patch+json".into(),
                                patch.clone(),
                            );
                        }
                        content.insert("application/apply-patch+yaml".into(), patch);
                        fields.insert(
                            "requestBody".into(),
                            json!({"required": true, "content": content}),
                        );
                    }
                    "delete" | "deletecollection" => {
                        let options =
                            json!({"schema": {"$ref": format!("{COMPONENTS}{DELETE_OPTIONS}")}});
                        fields.insert(
                            "requestBody".into(),
                            json!({"content": {"application/json": options}}),
                        );
                    }
                    _ => {}
                }
            }
            operation
        };
        let scope = if resource.namespaced {
            "Namespaced"
        } else {
            ""
        };
        let kind = &resource.kind;
        let collection = if resource.namespaced {
            format!("{root}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{root}/{}", resource.plural)
        };
        let mut collection_item = json!({
            "get": operation("list", "list", &format!("{scope}{kind}"), &list),
            "post": operation("post", "create", &format!("{scope}{kind}"), &object),
            "delete": operation("deletecollection", "delete", &format!("Collection{scope}{kind}"), &status_ref),
        });
        let mut item = json!({
            "get": operation("get", "read", &format!("{scope}{kind}"), &object),
            "put": operation("put", "replace", &format!("{scope}{kind}"), &object),
            "patch": operation("patch", "patch", &format!("{scope}{kind}"), &object),
            "delete": operation("delete", "delete", &format!("{scope}{kind}"), &status_ref),
        });
        let mut status_item = json!({
            "get": operation("get", "read", &format!("{scope}{kind}Status"), &object),
            "put": operation("put", "replace", &format!("{scope}{kind}Status"), &object),
            "patch": operation("patch", "patch", &format!("{scope}{kind}Status"), &object),
        });
        let namespace = json!({
            "name": "namespace", "in": "path", "required": true,
            "description": "object name and auth scope, such as for teams and projects",
            "schema": {"type": "string", "uniqueItems": true},
        });
        let name = json!({
            "name": "name", "in": "path", "required": true,
            "description": format!("name of the {kind}"),
            "schema": {"type": "string", "uniqueItems": true},
        });
        let mut collection_parameters = Vec::new();
        if resource.namespaced {
            collection_parameters.push(namespace);
        }
        let mut item_parameters = collection_parameters.clone();
        item_parameters.push(name);
        set(
            &mut collection_item,
            "parameters",
            json!(collection_parameters),
        );
        set(&mut item, "parameters", json!(item_parameters.clone()));
        set(&mut status_item, "parameters", json!(item_parameters));
        let item_path = format!("{collection}/{{name}}");
        if status {
            self.paths
                .insert(format!("{item_path}/status"), status_item);
        }
        self.paths.insert(item_path, item);
        self.paths.insert(collection, collection_item);
        if resource.namespaced {
            let all = json!({
                "get": operation("list", "list", &format!("{kind}ForAllNamespaces"), &list),
            });
            self.paths
                .insert(format!("{root}/{}", resource.plural), all);
        }
    }

    /// The document, with every strategy, list type and enum set.
    fn finish(mut self) -> Value {
        for (component, pointer, strategy) in std::mem::take(&mut self.strategies) {
            let Some(field) = self
                .components
                .get_mut(&component)
                .and_then(|schema| schema.pointer_mut(&pointer))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut strategies = Vec::new();
            match strategy.strategy {
                Some(PatchStrategy::Merge) => strategies.push("merge"),
                Some(PatchStrategy::Replace) => strategies.push("replace"),
                _ => {}
            }
            if strategy.retain_keys {
                strategies.push("retainKeys");
            }
            if !strategies.is_empty() {
                field.insert(
                    "x-kubernetes-patch-strategy".into(),
                    json!(strategies.join(",")),
                );
            }
            if let Some(key) = strategy.merge_key {
                field.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
        for (component, name, list_type, keys) in LIST_TYPES {
            if let Some(field) = self.property(component, name) {
                field.insert("x-kubernetes-list-type".into(), json!(list_type));
                if !keys.is_empty() {
                    field.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                }
            }
        }
        for (component, name, values) in ENUMS {
            if let Some(field) = self.property(component, name) {
                let target = match field.get_mut("items").and_then(Value::as_object_mut) {
                    Some(items) => items,
                    None => field,
                };
                target.insert("enum".into(), json!(values));
            }
        }
        if let Some(Value::Object(int_or_string)) = self.components.get_mut(INT_OR_STRING) {
            int_or_string.remove("x-kubernetes-int-or-string");
            int_or_string.remove("type");
            int_or_string.insert("format".into(), json!("int-or-string"));
            int_or_string.insert(
                "oneOf".into(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
        }
        if let Some(Value::Object(quantity)) = self.components.get_mut(QUANTITY) {
            quantity.remove("x-kubernetes-int-or-string");
            quantity.remove("type");
            quantity.insert(
                "oneOf".into(),
                json!([{"type": "string"}, {"type": "number"}]),
            );
        }
        let objects: Vec<String> = self
            .components
            .iter()
            .filter(|(_, schema)| schema.get("type").and_then(Value::as_str) == Some("object"))
            .map(|(name, _)| name.clone())
            .collect();
        for schema in self.components.values_mut() {
            add_object_defaults(schema, &objects);
        }
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
            "paths": self.paths,
            "components": {"schemas": self.components},
        })
    }

    /// The schema of a component's property, when both exist.
    fn property(&mut self, component: &str, name: &str) -> Option<&mut Map<String, Value>> {
        self.components
            .get_mut(component)?
            .get_mut("properties")?
            .get_mut(name)?
            .as_object_mut()
    }
}

fn set(target: &mut Value, key: &str, value: Value) {
    if let Some(object) = target.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

/// Adds `default: {}` where Kubernetes has it, as far as the schemas tell: on references to object
/// components that are list items, map values, required fields, or a kind's `metadata`, `spec` and
/// `status` (Go fields that are values, not pointers).
fn add_object_defaults(schema: &mut Value, objects: &[String]) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_kind = object.contains_key("x-kubernetes-group-version-kind");
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            let value_field = required.contains(name)
                || (is_kind && matches!(name.as_str(), "metadata" | "spec" | "status"));
            if value_field {
                default_object(property, objects);
            }
            add_object_defaults(property, objects);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(nested) = object.get_mut(key)
            && nested.is_object()
        {
            default_object(nested, objects);
            add_object_defaults(nested, objects);
        }
    }
}

/// Wraps a reference to an object component as `allOf` with `default: {}`.
fn default_object(schema: &mut Value, objects: &[String]) {
    let Some(target) = ref_target(schema) else {
        return;
    };
    if !objects.iter().any(|name| name == target) {
        return;
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(reference) = object.remove("$ref") {
        object.insert("allOf".into(), json!([{"$ref": reference}]));
    }
    object.entry("default").or_insert_with(|| json!({}));
}

/// The component a schema refers to, as `$ref` or a single-item `allOf`.
fn ref_target(schema: &Value) -> Option<&str> {
    let reference = match schema.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => all.first()?.get("$ref"),
        _ => schema.get("$ref"),
    };
    reference?.as_str()?.strip_prefix(COMPONENTS)
}

/// The names in the operation ids and tags of a resource's operations.
struct OperationNames {
    /// `AppsV1`, `CoreV1`, `CoordinationV1`, `StableExampleComV1`.
    group_version: String,
    /// `apps_v1`, `core_v1`, `rbacAuthorization_v1`.
    tag: String,
}

impl OperationNames {
    fn new(resource: &ApiResource) -> OperationNames {
        let group = if resource.group.is_empty() {
            "core"
        } else {
            resource
                .group
                .strip_suffix(".k8s.io")
                .unwrap_or(&resource.group)
        };
        let mut camel_group = String::new();
        for part in group.split(['.', '-']).filter(|part| !part.is_empty()) {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                camel_group.extend(first.to_uppercase());
                camel_group.push_str(chars.as_str());
            }
        }
        let mut group_version = camel_group.clone();
        let mut version = resource.version.chars();
        if let Some(first) = version.next() {
            group_version.extend(first.to_uppercase());
            group_version.push_str(version.as_str());
        }
        // Kubernetes' tag is the group in lower camel case: `core_v1`, `rbacAuthorization_v1`.
        let mut tag = String::new();
        let mut chars = camel_group.chars();
        if let Some(first) = chars.next() {
            tag.extend(first.to_lowercase());
            tag.push_str(chars.as_str());
        }
        tag.push('_');
        tag.push_str(&resource.version);
        OperationNames { group_version, tag }
    }
}

/// Rewrites one kind's JSON schema into OpenAPI 3.0 components; see the
/// [module documentation](self).
struct Converter<'a> {
    /// The schema's definitions.
    defs: &'a Map<String, Value>,
    /// The root schema's title: a reference to this definition is a reference to the root.
    root_title: Option<&'a str>,
    /// The root's component name.
    root_name: &'a str,
    /// The prefix of the components made of a custom kind's own types.
    prefix: &'a str,
    components: &'a mut BTreeMap<String, Value>,
    /// The definitions being inlined, outermost first, to catch types that contain themselves.
    inlining: Vec<String>,
}

/// Keys of a JSON schema that OpenAPI components do without.
const DROPPED: &[&str] = &[
    "$schema",
    "$defs",
    "definitions",
    "$id",
    "$comment",
    "title",
    "examples",
];

impl Converter<'_> {
    /// The converted copy of a schema node.
    fn convert(&mut self, node: &Value) -> Value {
        let Value::Object(fields) = node else {
            return node.clone();
        };
        let mut out = Map::new();
        let mut reference = None;
        for (key, value) in fields {
            if DROPPED.contains(&key.as_str()) {
                continue;
            }
            let converted = match key.as_str() {
                "$ref" => {
                    reference = value.as_str().map(str::to_owned);
                    continue;
                }
                "properties" | "patternProperties" => match value {
                    Value::Object(properties) => Value::Object(
                        properties
                            .iter()
                            .map(|(name, schema)| (name.clone(), self.convert(schema)))
                            .collect(),
                    ),
                    _ => value.clone(),
                },
                "items" | "additionalProperties" | "not" => self.convert(value),
                "allOf" | "anyOf" | "oneOf" => match value {
                    Value::Array(schemas) => {
                        Value::Array(schemas.iter().map(|schema| self.convert(schema)).collect())
                    }
                    _ => value.clone(),
                },
                "prefixItems" => continue,
                _ => value.clone(),
            };
            out.insert(key.clone(), converted);
        }
        if let Some(reference) = reference {
            match self.resolve(&reference) {
                Resolved::Component(name) => {
                    let target = json!({"$ref": format!("{COMPONENTS}{name}")});
                    if out.is_empty() {
                        return target;
                    }
                    out.insert("allOf".into(), json!([target]));
                }
                Resolved::Inline(Value::Object(inlined)) => {
                    for (key, value) in inlined {
                        out.entry(key).or_insert(value);
                    }
                }
                Resolved::Inline(_) => {}
            }
        }
        normalize(&mut out);
        Value::Object(out)
    }

    /// What a `$ref` stands for: a component, or a schema to inline.
    fn resolve(&mut self, reference: &str) -> Resolved {
        if reference == "#" {
            return Resolved::Component(self.root_name.to_owned());
        }
        let Some(key) = reference.strip_prefix(DEFS) else {
            // A reference schemars would not make: kept as a component name.
            return Resolved::Component(reference.rsplit('/').next().unwrap_or(reference).into());
        };
        let key = key.replace("~1", "/").replace("~0", "~");
        if Some(key.as_str()) == self.root_title {
            return Resolved::Component(self.root_name.to_owned());
        }
        let Some(definition) = self.defs.get(&key) else {
            return Resolved::Component(key);
        };
        if key.contains('.') || self.inlining.contains(&key) {
            let name = if key.contains('.') {
                key.clone()
            } else {
                format!("{}.{key}", self.prefix)
            };
            if !self.components.contains_key(&name) {
                // Holds the place while the definition is converted, for types that contain
                // themselves.
                self.components.insert(name.clone(), Value::Null);
                let converted = self.convert(definition);
                self.components.insert(name.clone(), converted);
            }
            return Resolved::Component(name);
        }
        self.inlining.push(key);
        let inlined = self.convert(definition);
        self.inlining.pop();
        Resolved::Inline(inlined)
    }
}

/// What a reference resolves to.
enum Resolved {
    Component(String),
    Inline(Value),
}

/// Rewrites the JSON-schema forms OpenAPI 3.0 lacks (see the [module documentation](self)).
fn normalize(schema: &mut Map<String, Value>) {
    // `type: ["string", "null"]`.
    if let Some(Value::Array(types)) = schema.get("type") {
        let mut types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let nullable = types.len()
            < schema
                .get("type")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
        if types.len() == 1 {
            schema.insert("type".into(), types.remove(0));
        } else if types.is_empty() {
            schema.remove("type");
        }
        if nullable {
            schema.insert("nullable".into(), json!(true));
        }
    }
    // `anyOf: [T, {type: null}]`.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = schema.get(key) else {
            continue;
        };
        let null = json!({"type": "null"});
        if branches.len() == 2 && branches.contains(&null) {
            let other = branches.iter().find(|branch| **branch != null).cloned();
            schema.remove(key);
            schema.insert("nullable".into(), json!(true));
            match other {
                Some(Value::Object(other)) if other.len() == 1 && other.contains_key("$ref") => {
                    schema.insert("allOf".into(), json!([other]));
                }
                Some(Value::Object(other)) => {
                    for (field, value) in other {
                        schema.entry(field).or_insert(value);
                    }
                }
                _ => {}
            }
        }
    }
    // A `oneOf` of constants (a Rust enum whose variants have doc comments).
    if let Some(Value::Array(branches)) = schema.get("oneOf") {
        let values: Option<Vec<Value>> = branches
            .iter()
            .map(|branch| {
                branch
                    .get("const")
                    .cloned()
                    .or_else(|| match branch.get("enum") {
                        Some(Value::Array(values)) if values.len() == 1 => values.first().cloned(),
                        _ => None,
                    })
            })
            .collect();
        if let Some(values) = values.filter(|values| !values.is_empty()) {
            let kind = branches
                .iter()
                .find_map(|branch| branch.get("type").cloned());
            schema.remove("oneOf");
            schema.insert("enum".into(), Value::Array(values));
            if let Some(kind) = kind {
                schema.entry("type").or_insert(kind);
            }
        }
    }
    if let Some(value) = schema.remove("const") {
        schema.entry("enum").or_insert_with(|| json!([value]));
    }
    if let Some(Value::String(format)) = schema.get("format") {
        let format = match format.as_str() {
            "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
            "uint32" | "uint64" | "uint" | "int" | "uint128" | "int128" => Some("int64"),
            _ => None,
        };
        if let Some(format) = format {
            schema.insert("format".into(), json!(format));
        }
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(limit) = schema
            .get(exclusive)
            .filter(|limit| limit.is_number())
            .cloned()
        {
            schema.insert(bound.into(), limit);
            schema.insert(exclusive.into(), json!(true));
        }
    }
}

/// Finds the fields a kind's merge-key table names, following references from the kind's
/// component.
struct StrategyWalk<'a> {
    components: &'a BTreeMap<String, Value>,
    keys: &'a MergeKeys,
    /// The components being walked, to stop at types that contain themselves.
    stack: Vec<String>,
    found: Vec<(String, String, FieldStrategy)>,
}

impl StrategyWalk<'_> {
    /// Walks `schema`, found at `pointer` in `component`, which is the field at `path` of the kind.
    fn walk(&mut self, schema: &Value, component: &str, pointer: String, path: &str) {
        if let Some(target) = ref_target(schema) {
            if self.stack.iter().any(|name| name == target) {
                return;
            }
            let components = self.components;
            if let Some(next) = components.get(target) {
                self.stack.push(target.to_owned());
                self.walk(next, target, String::new(), path);
                self.stack.pop();
            }
            return;
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                let field_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let field_pointer = format!(
                    "{pointer}/properties/{}",
                    name.replace('~', "~0").replace('/', "~1")
                );
                if let Some(strategy) = self.keys.field(&field_path) {
                    self.found.push((
                        component.to_owned(),
                        field_pointer.clone(),
                        strategy.clone(),
                    ));
                }
                self.walk(property, component, field_pointer, &field_path);
            }
        }
        if let Some(items) = schema.get("items") {
            self.walk(items, component, format!("{pointer}/items"), path);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let values_path = if path.is_empty() {
                "*".to_owned()
            } else {
                format!("{path}.*")
            };
            self.walk(
                values,
                component,
                format!("{pointer}/additionalProperties"),
                &values_path,
            );
        }
    }
}

/// The Swagger 2.0 document being made from the v3 documents.
#[derive(Default)]
struct SwaggerV2 {
    paths: Map<String, Value>,
    definitions: Map<String, Value>,
}

impl SwaggerV2 {
    /// Adds one v3 document's paths and schemas.
    fn add(&mut self, document: &Value) {
        if let Some(schemas) = document
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in schemas {
                self.definitions
                    .entry(name.clone())
                    .or_insert_with(|| v2_schema(schema));
            }
        }
        if let Some(paths) = document.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                let mut converted = Map::new();
                if let Some(operations) = item.as_object() {
                    for (method, operation) in operations {
                        converted.insert(method.clone(), v2_operation(operation));
                    }
                }
                self.paths.insert(path.clone(), Value::Object(converted));
            }
        }
    }

    fn finish(self) -> Value {
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
            "paths": self.paths,
            "definitions": self.definitions,
        })
    }
}

/// A v3 schema in v2's form: references to `#/definitions/`, and the `oneOf` of `IntOrString`
/// and `Quantity` (which v2 lacks) as Kubernetes writes them in v2.
fn v2_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if key == "$ref" {
                    let target = value
                        .as_str()
                        .unwrap_or_default()
                        .replace(COMPONENTS, "#/definitions/");
                    out.insert(key.clone(), Value::String(target));
                } else if key == "oneOf" || key == "nullable" {
                    // Not in v2: `IntOrString` and `Quantity` are strings there, as Kubernetes
                    // writes them (the former with `format: int-or-string`).
                    if key == "oneOf" {
                        out.entry("type").or_insert_with(|| json!("string"));
                    }
                } else {
                    out.insert(key.clone(), v2_schema(value));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(v2_schema).collect()),
        other => other.clone(),
    }
}

/// A v3 operation in v2's form: the request body as a `body` parameter, each response's schema
/// beside its description, the media types in `consumes` and `produces`.
fn v2_operation(operation: &Value) -> Value {
    let Some(map) = operation.as_object() else {
        return operation.clone();
    };
    let mut out = Map::new();
    let mut parameters: Vec<Value> = map
        .get("parameters")
        .and_then(Value::as_array)
        .map(|parameters| {
            parameters
                .iter()
                .map(|parameter| {
                    let mut parameter = parameter.clone();
                    if let Some(fields) = parameter.as_object_mut()
                        && let Some(schema) = fields.remove("schema")
                    {
                        if let Some(kind) = schema.get("type") {
                            fields.insert("type".into(), kind.clone());
                        }
                        fields.insert("uniqueItems".into(), json!(true));
                    }
                    parameter
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(content) = map
        .get("requestBody")
        .and_then(|body| body.get("content"))
        .and_then(Value::as_object)
    {
        let consumes: Vec<&String> = content.keys().collect();
        out.insert("consumes".into(), json!(consumes));
        if let Some(schema) = content.values().find_map(|media| media.get("schema")) {
            parameters.push(json!({
                "name": "body",
                "in": "body",
                "required": true,
                "schema": v2_schema(schema),
            }));
        }
    }
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    let mut produces = Vec::new();
    let mut responses = Map::new();
    if let Some(listed) = map.get("responses").and_then(Value::as_object) {
        for (code, response) in listed {
            let mut converted = Map::new();
            if let Some(description) = response.get("description") {
                converted.insert("description".into(), description.clone());
            }
            if let Some(content) = response.get("content").and_then(Value::as_object) {
                for media in content.keys() {
                    if !produces.contains(media) {
                        produces.push(media.clone());
                    }
                }
                if let Some(schema) = content.values().find_map(|media| media.get("schema")) {
                    converted.insert("schema".into(), v2_schema(schema));
                }
            }
            responses.insert(code.clone(), Value::Object(converted));
        }
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("responses".into(), Value::Object(responses));
    for (key, value) in map {
        if !matches!(key.as_str(), "parameters" | "requestBody" | "responses") {
            out.insert(key.clone(), value.clone());
        }
    }
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

/// An operation's query parameter, as Kubernetes' documents describe it.
fn query_parameter(name: &str) -> Value {
    let (kind, description) = match name {
        "dryRun" => (
            "string",
            "When present, indicates that modifications should not be persisted. The only valid value is All.",
        ),
        "fieldManager" => (
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        "fieldValidation" => (
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.",
        ),
        "force" => (
            "boolean",
            "Force is going to \"force\" Apply requests: re-acquire conflicting fields owned by other people.",
        ),
        "gracePeriodSeconds" => (
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        "propagationPolicy" => (
            "string",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
        ),
        "labelSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their labels.",
        ),
        "fieldSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their fields.",
        ),
        "limit" => (
            "integer",
            "The maximum number of responses to return for a list call.",
        ),
        "continue" => (
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        "resourceVersion" => (
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        "resourceVersionMatch" => (
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        "watch" => (
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
        "allowWatchBookmarks" => (
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        "timeoutSeconds" => ("integer", "Timeout for the list/watch call."),
        _ => ("string", "If 'true', then the output is pretty printed."),
    };
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": true},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestra_core::resource::ApiResource;

    fn document(openapi: &OpenApi, path: &str) -> Value {
        serde_json::from_slice(openapi.document(path).unwrap()).unwrap()
    }

    fn schemas(document: &Value) -> &Map<String, Value> {
        document["components"]["schemas"].as_object().unwrap()
    }

    #[test]
    fn openapi_index_names_each_document_by_its_hash() {
        let openapi = OpenApi::new(&Scheme::default());
        let index: Value = serde_json::from_slice(openapi.index()).unwrap();
        let paths = index["paths"].as_object().unwrap();
        let names: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/coordination.k8s.io/v1",
                "apis/rbac.authorization.k8s.io/v1",
                "apis/scheduling.k8s.io/v1"
            ]
        );
        for (path, entry) in paths {
            let bytes = openapi.document(path).unwrap();
            let hash = hex_sha256(bytes);
            assert_eq!(openapi.hash(path), Some(hash.as_str()));
            assert_eq!(
                entry["serverRelativeURL"],
                format!("/openapi/v3/{path}?hash={hash}")
            );
            assert_eq!(openapi.document(&format!("/{path}")), Some(bytes));
        }
        assert!(openapi.document("apis/batch/v1").is_none());
    }

    #[test]
    fn openapi_deployment_component_is_named_and_described_as_kubernetes_does() {
        let openapi = OpenApi::new(&Scheme::default());
        let document = document(&openapi, "apis/apps/v1");
        assert_eq!(document["openapi"], "3.0.0");
        assert_eq!(document["info"]["title"], "Kubernetes");
        let schemas = schemas(&document);
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            deployment["description"],
            "Deployment enables declarative updates for Pods and ReplicaSets."
        );
        assert!(deployment.get("required").is_none());
        assert!(deployment.get("$defs").is_none() && deployment.get("title").is_none());
        assert_eq!(
            deployment["properties"]["metadata"],
            json!({
                "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
                "default": {},
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            })
        );
        let spec = &schemas["io.k8s.api.apps.v1.DeploymentSpec"];
        let strategy = &spec["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
        );
        assert_eq!(
            strategy["description"],
            "The deployment strategy to use to replace existing pods with new ones."
        );
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(spec["properties"]["replicas"]["format"], "int32");
        assert_eq!(spec["required"], json!(["selector", "template"]));
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentStrategy"];
        assert_eq!(
            strategy["properties"]["type"]["enum"],
            json!(["Recreate", "RollingUpdate"])
        );
        assert_eq!(strategy["properties"]["type"]["type"], "string");
        let rolling = &schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"];
        assert_eq!(
            rolling["properties"]["maxSurge"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
        );
        assert_eq!(
            schemas[INT_OR_STRING]["format"], "int-or-string",
            "IntOrString takes Kubernetes' shape"
        );
        assert!(schemas[INT_OR_STRING].get("type").is_none());
        assert_eq!(
            schemas[QUANTITY]["oneOf"],
            json!([{"type": "string"}, {"type": "number"}])
        );
        // Every reference points at a component of the same document.
        let text = serde_json::to_string(&document).unwrap();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let name = reference.split('"').next().unwrap();
            let name = name.strip_prefix(COMPONENTS).unwrap();
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        assert!(!text.contains("$defs"));
        assert!(schemas.contains_key("io.k8s.api.apps.v1.DeploymentList"));
    }

    #[test]
    fn openapi_pod_containers_carry_merge_keys_and_list_types() {
        let openapi = OpenApi::new(&Scheme::default());
        for path in ["api/v1", "apis/apps/v1"] {
            let document = document(&openapi, path);
            let schemas = schemas(&document);
            let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
            assert_eq!(containers["type"], "array");
            assert_eq!(
                containers["items"],
                json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}})
            );
            assert_eq!(containers["x-kubernetes-patch-merge-key"], "name", "{path}");
            assert_eq!(containers["x-kubernetes-patch-strategy"], "merge", "{path}");
            let container = &schemas["io.k8s.api.core.v1.Container"]["properties"];
            assert_eq!(
                container["ports"]["x-kubernetes-patch-merge-key"],
                "containerPort"
            );
            assert_eq!(container["ports"]["x-kubernetes-list-type"], "map");
            assert_eq!(
                container["ports"]["x-kubernetes-list-map-keys"],
                json!(["containerPort", "protocol"])
            );
            assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
            let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
            assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
            let meta = &schemas[OBJECT_META]["properties"];
            assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
            assert_eq!(
                meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
                "uid"
            );
        }
    }

    #[test]
    fn openapi_paths_name_operations_as_kubernetes_does() {
        let openapi = OpenApi::new(&Scheme::default());
        let document = document(&openapi, "api/v1");
        let paths = &document["paths"];
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedPod");
        assert_eq!(item["patch"]["x-kubernetes-action"], "patch");
        assert!(
            item["patch"]["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_some()
        );
        assert_eq!(
            item["delete"]["x-kubernetes-group-version-kind"],
            json!({"group": "", "kind": "Pod", "version": "v1"})
        );
        let collection = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(collection["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(
            collection["post"]["operationId"],
            "createCoreV1NamespacedPod"
        );
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
            "patchCoreV1NamespacedPodStatus"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}"]["put"]["operationId"],
            "replaceCoreV1Node"
        );
        let document = super::tests::document(&openapi, "apis/coordination.k8s.io/v1");
        assert_eq!(
            document["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["get"]
                ["operationId"],
            "listCoordinationV1NamespacedLease"
        );
        assert_eq!(
            document["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["get"]
                ["tags"],
            json!(["coordination_v1"])
        );
        let document = super::tests::document(&openapi, "apis/rbac.authorization.k8s.io/v1");
        let paths = &document["paths"];
        let roles = &paths["/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles"];
        assert_eq!(
            roles["get"]["operationId"],
            "listRbacAuthorizationV1NamespacedRole"
        );
        assert_eq!(roles["get"]["tags"], json!(["rbacAuthorization_v1"]));
        assert_eq!(
            paths["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"]["put"]["operationId"],
            "replaceRbacAuthorizationV1ClusterRoleBinding"
        );
        assert_eq!(
            paths["/apis/rbac.authorization.k8s.io/v1/rolebindings"]["get"]["operationId"],
            "listRbacAuthorizationV1RoleBindingForAllNamespaces"
        );
    }

    #[test]
    fn openapi_rbac_components_are_kubernetes_names_with_atomic_lists() {
        let openapi = OpenApi::new(&Scheme::default());
        let document = document(&openapi, "apis/rbac.authorization.k8s.io/v1");
        let schemas = schemas(&document);
        for (kind, list) in [
            ("Role", "rules"),
            ("ClusterRole", "rules"),
            ("RoleBinding", "subjects"),
            ("ClusterRoleBinding", "subjects"),
        ] {
            let component = &schemas[&format!("io.k8s.api.rbac.v1.{kind}")];
            assert_eq!(
                component["x-kubernetes-group-version-kind"],
                json!([{"group": "rbac.authorization.k8s.io", "kind": kind, "version": "v1"}]),
                "{kind}"
            );
            assert_eq!(
                component["properties"][list]["x-kubernetes-list-type"], "atomic",
                "{kind}"
            );
            assert!(
                schemas.contains_key(&format!("io.k8s.api.rbac.v1.{kind}List")),
                "{kind}"
            );
        }
        for component in [
            "io.k8s.api.rbac.v1.PolicyRule",
            "io.k8s.api.rbac.v1.Subject",
            "io.k8s.api.rbac.v1.RoleRef",
            "io.k8s.api.rbac.v1.AggregationRule",
        ] {
            assert!(schemas.contains_key(component), "{component}");
        }
        assert_eq!(
            schemas["io.k8s.api.rbac.v1.PolicyRule"]["properties"]["verbs"]["x-kubernetes-list-type"],
            "atomic"
        );
        assert_eq!(
            schemas["io.k8s.api.rbac.v1.ClusterRoleBinding"]["properties"]["roleRef"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.rbac.v1.RoleRef"
        );
    }

    #[test]
    fn openapi_custom_kinds_are_named_by_their_reversed_group() {
        let mut scheme = Scheme::empty();
        scheme.register_dynamic(ApiResource {
            group: "stable.example.com".into(),
            version: "v1".into(),
            api_version: "stable.example.com/v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            namespaced: true,
        });
        let openapi = OpenApi::new(&scheme);
        let document = document(&openapi, "apis/stable.example.com/v1");
        let schemas = schemas(&document);
        let cron_tab = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(cron_tab["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(
            cron_tab["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
        );
        let operation = &document["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
            ["patch"];
        assert_eq!(
            operation["operationId"],
            "patchStableExampleComV1NamespacedCronTab"
        );
        assert!(
            operation["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
    }

    #[test]
    fn openapi_json_schema_forms_become_openapi_forms() {
        let mut schema = Map::new();
        schema.insert("type".into(), json!(["string", "null"]));
        schema.insert("format".into(), json!("uint16"));
        normalize(&mut schema);
        assert_eq!(
            Value::Object(schema),
            json!({"type": "string", "nullable": true, "format": "int32"})
        );
        let mut schema = json!({
            "oneOf": [
                {"type": "string", "const": "A", "description": "a"},
                {"type": "string", "const": "B"},
            ],
            "description": "letters",
        });
        normalize(schema.as_object_mut().unwrap());
        assert_eq!(
            schema,
            json!({"type": "string", "enum": ["A", "B"], "description": "letters"})
        );
        let defs = Map::new();
        let mut components = BTreeMap::new();
        let mut converter = Converter {
            defs: &defs,
            root_title: None,
            root_name: "x.v1.X",
            prefix: "x.v1",
            components: &mut components,
            inlining: Vec::new(),
        };
        let converted = converter.convert(&json!({
            "anyOf": [{"$ref": "#"}, {"type": "null"}],
            "description": "self",
        }));
        assert_eq!(
            converted,
            json!({"allOf": [{"$ref": "#/components/schemas/x.v1.X"}], "nullable": true, "description": "self"})
        );
    }

    #[test]
    fn openapi_v2_holds_every_definition_and_path() {
        let openapi = OpenApi::new(&Scheme::default());
        let v2: Value = serde_json::from_slice(openapi.v2()).unwrap_or_default();
        assert_eq!(v2["swagger"], "2.0");
        let deployment = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let text = String::from_utf8_lossy(openapi.v2()).into_owned();
        assert!(!text.contains("#/components/schemas/"));
        assert!(text.contains("#/definitions/io.k8s.api.apps.v1.DeploymentSpec"));
        let int_or_string = &v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["type"], "string", "{int_or_string}");
        assert_eq!(int_or_string["format"], "int-or-string", "{int_or_string}");
        assert!(int_or_string.get("oneOf").is_none());
        let create = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        let body = create["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["in"] == "body")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            body["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
    }
}
