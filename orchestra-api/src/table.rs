//! Server-side printing: the `Table` (`meta.k8s.io/v1`) answers `kubectl get` asks for.
//!
//! `kubectl get` does not format objects itself. It asks the server for a table by sending
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (with `v1beta1` and plain JSON as
//! fallbacks), and prints the columns the server chose, hiding those whose `priority` is above 0
//! unless it was given `-o wide`. The server therefore always fills in every column, the wide ones
//! included, exactly as Kubernetes' API server does (it renders with `Wide: true`).
//!
//! [`table`] renders a list of objects of one kind into such a `Table`. The columns and the text
//! of every cell follow Kubernetes' own printers (`pkg/printers/internalversion/printers.go`) for
//! the kinds an Orchestra cluster serves:
//!
//! | kind | columns | added by `-o wide` |
//! |---|---|---|
//! | Pod | NAME, READY, STATUS, RESTARTS, AGE | IP, NODE, NOMINATED NODE, READINESS GATES |
//! | Deployment | NAME, READY, UP-TO-DATE, AVAILABLE, AGE | CONTAINERS, IMAGES, SELECTOR |
//! | ReplicaSet, ReplicationController | NAME, DESIRED, CURRENT, READY, AGE | CONTAINERS, IMAGES, SELECTOR |
//! | Service | NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE | SELECTOR |
//! | Endpoints | NAME, ENDPOINTS, AGE | — |
//! | Node | NAME, STATUS, ROLES, AGE, VERSION | INTERNAL-IP, EXTERNAL-IP, OS-IMAGE, KERNEL-VERSION, CONTAINER-RUNTIME |
//! | Namespace | NAME, STATUS, AGE | — |
//! | Event (core and `events.k8s.io`) | LAST SEEN, TYPE, REASON, OBJECT, MESSAGE | SUBOBJECT, SOURCE (before MESSAGE), FIRST SEEN, COUNT, NAME |
//! | ConfigMap | NAME, DATA, AGE | — |
//! | Secret | NAME, TYPE, DATA, AGE | — |
//! | ServiceAccount | NAME, SECRETS, AGE | — |
//! | Lease | NAME, HOLDER, AGE | — |
//! | PriorityClass | NAME, VALUE, GLOBAL-DEFAULT, AGE, PREEMPTIONPOLICY | — |
//! | Role, ClusterRole | NAME, CREATED AT | — |
//! | RoleBinding, ClusterRoleBinding | NAME, ROLE, AGE | USERS, GROUPS, SERVICEACCOUNTS |
//!
//! Every other kind (custom resources above all) gets NAME and AGE, the columns Kubernetes gives a
//! custom resource whose definition declares no `additionalPrinterColumns`.
//!
//! Objects are read as JSON, leniently, the way Go decodes them: a missing field reads as its zero
//! value and never makes the row fail. Where the API server would have defaulted a field on create
//! (a Service's `type`, a port's `protocol`, `replicas`, a Pod's `phase`), the default is printed.
//!
//! Ages are [`human_duration`]s (`5s`, `3m20s`, `2d3h`), Kubernetes' `duration.HumanDuration`,
//! measured against the `now` the caller passes, so that rendering is a pure function of its input.
//!
//! Each row carries the object as the client asked with `includeObject` ([`IncludeObject`]): by
//! default its metadata as a `PartialObjectMetadata`, which is what `kubectl get` uses to print the
//! NAMESPACE column of `--all-namespaces` and the labels of `--show-labels`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use orchestra_core::resource::ApiResource;
use serde_json::{Map, Value, json};

/// What each row of a `Table` carries besides its cells: the `includeObject` query parameter.
///
/// `kubectl get` sends no `includeObject` (so rows carry metadata, enough for its NAMESPACE and
/// LABELS columns) unless it sorts with `--sort-by`, when it asks for `Object`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IncludeObject {
    /// Rows carry no object (`includeObject=None`).
    None,
    /// Rows carry the object's metadata as a `meta.k8s.io/v1` `PartialObjectMetadata`
    /// (`includeObject=Metadata`, and the default).
    #[default]
    Metadata,
    /// Rows carry the whole object (`includeObject=Object`).
    Object,
}

/// The error of [`IncludeObject::from_query`]: a value Kubernetes does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized includeObject value: {0:?}")]
pub struct UnknownIncludeObject(pub String);

impl IncludeObject {
    /// Reads the `includeObject` query parameter leniently: absent, empty or unknown values mean
    /// [`IncludeObject::Metadata`], the default; `None`, `Metadata` and `Object` (spelled as
    /// Kubernetes spells them) name the three policies. [`IncludeObject::try_from_query`] is the
    /// strict form, for a server that answers unknown values with `400 Bad Request` as Kubernetes
    /// does.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_api::table::IncludeObject;
    ///
    /// assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    /// assert_eq!(IncludeObject::from_query(Some("Object")), IncludeObject::Object);
    /// assert_eq!(IncludeObject::from_query(Some("None")), IncludeObject::None);
    /// ```
    pub fn from_query(value: Option<&str>) -> IncludeObject {
        IncludeObject::try_from_query(value).unwrap_or_default()
    }

    /// Reads the `includeObject` query parameter strictly: like [`IncludeObject::from_query`], but
    /// a value Kubernetes does not know is an error (its message is the API server's).
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_api::table::IncludeObject;
    ///
    /// assert_eq!(IncludeObject::try_from_query(Some("Metadata")), Ok(IncludeObject::Metadata));
    /// let error = IncludeObject::try_from_query(Some("everything")).unwrap_err();
    /// assert_eq!(error.to_string(), "unrecognized includeObject value: \"everything\"");
    /// ```
    pub fn try_from_query(value: Option<&str>) -> Result<IncludeObject, UnknownIncludeObject> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(UnknownIncludeObject(other.to_owned())),
        }
    }
}

/// Whether an `Accept` header asks for a `meta.k8s.io` `Table` (`as=Table;g=meta.k8s.io`, version
/// `v1` or `v1beta1`) in JSON, as `kubectl get` does.
///
/// # Examples
///
/// ```
/// use orchestra_api::table::accepts_table;
///
/// assert!(accepts_table(
///     "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
/// ));
/// assert!(!accepts_table("application/json"));
/// ```
pub fn accepts_table(accept: &str) -> bool {
    accept.split(',').any(|media_range| {
        let mut parts = media_range.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        if !essence.eq_ignore_ascii_case("application/json") {
            return false;
        }
        let (mut as_table, mut group, mut version) = (false, false, false);
        for parameter in parts {
            match parameter.split_once('=') {
                Some(("as", "Table")) => as_table = true,
                Some(("g", "meta.k8s.io")) => group = true,
                Some(("v", "v1" | "v1beta1")) => version = true,
                _ => {}
            }
        }
        as_table && group && version
    })
}

/// Renders `objects`, all of the kind `resource`, into a `meta.k8s.io/v1` `Table`.
///
/// `list_meta` becomes the table's `metadata` (pass the list's `resourceVersion`, `continue` and
/// `remainingItemCount`; empty strings and nulls are dropped, anything but an object is ignored).
/// `include_object` decides what each row carries beside its cells, and `now` is the instant ages
/// are measured from. Every column is filled, the `-o wide` ones (`priority: 1`) included:
/// `kubectl` hides those itself.
///
/// # Examples
///
/// ```
/// use orchestra_api::table::{IncludeObject, table};
/// use orchestra_core::resource::ApiResource;
/// use serde_json::json;
///
/// let pods = ApiResource::new("", "v1", "Pod", None, true);
/// let pod = json!({
///     "apiVersion": "v1", "kind": "Pod",
///     "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"},
///     "spec": {"containers": [{"name": "web", "image": "nginx"}]},
///     "status": {"phase": "Running", "containerStatuses": [
///         {"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}
///     ]}
/// });
/// let now = "2025-01-01T00:05:00Z".parse().unwrap();
/// let answer = table(&pods, &[pod], json!({"resourceVersion": "42"}), IncludeObject::None, now);
///
/// assert_eq!(answer["kind"], "Table");
/// assert_eq!(answer["metadata"]["resourceVersion"], "42");
/// assert_eq!(answer["columnDefinitions"][0]["name"], "Name");
/// assert_eq!(answer["rows"][0]["cells"], json!(["web-1", "1/1", "Running", "0", "5m", "<none>", "<none>", "<none>", "<none>"]));
/// ```
pub fn table(
    resource: &ApiResource,
    objects: &[Value],
    list_meta: Value,
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let printer = Printer::of(resource);
    let columns: Vec<Value> = printer.columns().iter().map(Column::to_json).collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let Row { cells, conditions } = printer.row(object, now);
            let mut row = Map::new();
            row.insert("cells".to_owned(), Value::Array(cells));
            if let Some(conditions) = conditions {
                row.insert("conditions".to_owned(), conditions);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = match object.get("metadata") {
                        Some(metadata @ Value::Object(_)) => metadata.clone(),
                        _ => json!({}),
                    };
                    row.insert(
                        "object".to_owned(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": metadata,
                        }),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".to_owned(), object.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata: Map<String, Value> = match list_meta {
        Value::Object(fields) => fields
            .into_iter()
            .filter(|(_, value)| !matches!(value, Value::Null) && value.as_str() != Some(""))
            .collect(),
        _ => Map::new(),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Kubernetes' `duration.HumanDuration`: a duration as the two most significant units that
/// matter at its size (`45s`, `119s`, `3m20s`, `15m`, `5h30m`, `20h`, `2d3h`, `30d`, `2y45d`, `9y`).
///
/// A duration less than two seconds below zero reads `0s` (clocks drift); further below, `<invalid>`.
///
/// # Examples
///
/// ```
/// use jiff::SignedDuration;
/// use orchestra_api::table::human_duration;
///
/// assert_eq!(human_duration(SignedDuration::from_secs(200)), "3m20s");
/// assert_eq!(human_duration(SignedDuration::from_hours(51)), "2d3h");
/// ```
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// Columns.
// ---------------------------------------------------------------------------------------------

/// One column definition (`TableColumnDefinition`).
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

impl Column {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by default.
const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown with `-o wide` only.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority: 1,
        description,
    }
}

/// `metav1.ObjectMeta{}.SwaggerDoc()["name"]`.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]`.
const CREATION_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: NAME_DOC,
};
const AGE: Column = col("Age", "string", CREATION_DOC);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\"",
    ),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of non-terminating pods.",
    ),
    col(
        "Ready",
        "integer",
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set.",
    ),
];

const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template.",
    ),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify.",
    ),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share.",
    ),
    AGE,
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        priority: 1,
        description: NAME_DOC,
    },
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
    ),
];

/// Role and ClusterRole: their creation time as a date, not an age.
const ROLE_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATION_DOC)];

/// The wide columns of RoleBinding and ClusterRoleBinding.
const USERS: Column = wide("Users", "string", "Users in the roleBinding");
const GROUPS: Column = wide("Groups", "string", "Groups in the roleBinding");
const SERVICE_ACCOUNTS: Column = wide(
    "ServiceAccounts",
    "string",
    "ServiceAccounts in the roleBinding",
);

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
    ),
    AGE,
    USERS,
    GROUPS,
    SERVICE_ACCOUNTS,
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
    ),
    AGE,
    USERS,
    GROUPS,
    SERVICE_ACCOUNTS,
];

/// The columns of a custom resource without `additionalPrinterColumns`.
const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Age", "date", CREATION_DOC)];

// ---------------------------------------------------------------------------------------------
// Printers.
// ---------------------------------------------------------------------------------------------

/// The cells (and, for pods, the row conditions) of one row.
struct Row {
    cells: Vec<Value>,
    conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Row {
        Row {
            cells,
            conditions: None,
        }
    }
}

/// The printer of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    Deployment,
    ReplicaSet,
    ReplicationController,
    Service,
    Endpoints,
    Node,
    Namespace,
    Event,
    EventsV1Event,
    ConfigMap,
    Secret,
    ServiceAccount,
    Lease,
    PriorityClass,
    Role,
    RoleBinding,
    ClusterRoleBinding,
    Default,
}

impl Printer {
    fn of(resource: &ApiResource) -> Printer {
        match (resource.group.as_str(), resource.kind.as_str()) {
            ("", "Pod") => Printer::Pod,
            ("", "ReplicationController") => Printer::ReplicationController,
            ("", "Service") => Printer::Service,
            ("", "Endpoints") => Printer::Endpoints,
            ("", "Node") => Printer::Node,
            ("", "Namespace") => Printer::Namespace,
            ("", "Event") => Printer::Event,
            ("", "ConfigMap") => Printer::ConfigMap,
            ("", "Secret") => Printer::Secret,
            ("", "ServiceAccount") => Printer::ServiceAccount,
            ("apps", "Deployment") => Printer::Deployment,
            ("apps", "ReplicaSet") => Printer::ReplicaSet,
            ("events.k8s.io", "Event") => Printer::EventsV1Event,
            ("coordination.k8s.io", "Lease") => Printer::Lease,
            ("scheduling.k8s.io", "PriorityClass") => Printer::PriorityClass,
            ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => Printer::Role,
            ("rbac.authorization.k8s.io", "RoleBinding") => Printer::RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Printer::ClusterRoleBinding,
            _ => Printer::Default,
        }
    }

    fn columns(self) -> &'static [Column] {
        match self {
            Printer::Pod => POD_COLUMNS,
            Printer::Deployment => DEPLOYMENT_COLUMNS,
            Printer::ReplicaSet => REPLICA_SET_COLUMNS,
            Printer::ReplicationController => REPLICATION_CONTROLLER_COLUMNS,
            Printer::Service => SERVICE_COLUMNS,
            Printer::Endpoints => ENDPOINTS_COLUMNS,
            Printer::Node => NODE_COLUMNS,
            Printer::Namespace => NAMESPACE_COLUMNS,
            Printer::Event | Printer::EventsV1Event => EVENT_COLUMNS,
            Printer::ConfigMap => CONFIG_MAP_COLUMNS,
            Printer::Secret => SECRET_COLUMNS,
            Printer::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
            Printer::Lease => LEASE_COLUMNS,
            Printer::PriorityClass => PRIORITY_CLASS_COLUMNS,
            Printer::Role => ROLE_COLUMNS,
            Printer::RoleBinding => ROLE_BINDING_COLUMNS,
            Printer::ClusterRoleBinding => CLUSTER_ROLE_BINDING_COLUMNS,
            Printer::Default => DEFAULT_COLUMNS,
        }
    }

    fn row(self, object: &Value, now: Timestamp) -> Row {
        match self {
            Printer::Pod => pod_row(object, now),
            Printer::Deployment => deployment_cells(object, now).into(),
            Printer::ReplicaSet => replica_set_cells(object, now).into(),
            Printer::ReplicationController => replication_controller_cells(object, now).into(),
            Printer::Service => service_cells(object, now).into(),
            Printer::Endpoints => endpoints_cells(object, now).into(),
            Printer::Node => node_cells(object, now).into(),
            Printer::Namespace => namespace_cells(object, now).into(),
            Printer::Event => event_cells(&CoreEvent::from_core(object), now).into(),
            Printer::EventsV1Event => event_cells(&CoreEvent::from_events_v1(object), now).into(),
            Printer::ConfigMap => config_map_cells(object, now).into(),
            Printer::Secret => secret_cells(object, now).into(),
            Printer::ServiceAccount => service_account_cells(object, now).into(),
            Printer::Lease => lease_cells(object, now).into(),
            Printer::PriorityClass => priority_class_cells(object, now).into(),
            Printer::Role => role_cells(object).into(),
            Printer::RoleBinding | Printer::ClusterRoleBinding => {
                role_binding_cells(object, now).into()
            }
            Printer::Default => default_cells(object, now).into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lenient JSON access, Go's zero values for what is missing.
// ---------------------------------------------------------------------------------------------

/// The value at a JSON pointer, if any.
fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|found| !found.is_null())
}

/// The string at `pointer`, or `""`.
fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    at(value, pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `pointer`, or 0.
fn int(value: &Value, pointer: &str) -> i64 {
    at(value, pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The boolean at `pointer`, or false.
fn flag(value: &Value, pointer: &str) -> bool {
    at(value, pointer).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `pointer`, or an empty slice.
fn list<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    at(value, pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The number of entries of the map at `pointer`.
fn map_len(value: &Value, pointer: &str) -> usize {
    at(value, pointer)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

/// The object at `pointer`, if there is one (a Go pointer that is not nil).
fn object<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    at(value, pointer).filter(|found| found.is_object())
}

/// The timestamp at `pointer`; `None` when absent, unparsable, or Go's zero time.
fn time(value: &Value, pointer: &str) -> Option<Timestamp> {
    let parsed: Timestamp = text(value, pointer).parse().ok()?;
    (parsed.as_second() != GO_ZERO_TIME_SECONDS).then_some(parsed)
}

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, in Unix seconds.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Kubernetes' `translateTimestampSince`: the age of `timestamp` at `now`, or `<unknown>`.
fn since(timestamp: Option<Timestamp>, now: Timestamp) -> String {
    match timestamp {
        Some(timestamp) => human_duration(now.duration_since(timestamp)),
        None => "<unknown>".to_owned(),
    }
}

/// The object's name.
fn name(object: &Value) -> Value {
    Value::from(text(object, "/metadata/name"))
}

/// The object's age.
fn age(object: &Value, now: Timestamp) -> Value {
    Value::from(since(time(object, "/metadata/creationTimestamp"), now))
}

/// Kubernetes' `labels.FormatLabels`: `k=v` pairs sorted by key, or `<none>`.
fn format_labels(labels: Option<&Value>) -> String {
    let pairs: BTreeMap<&str, &str> = labels
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_owned();
    }
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Kubernetes' `metav1.LabelSelectorAsSelector(...).String()`: requirements sorted by key; `""`
/// for a missing or empty selector; `Err` for an operator or value list Kubernetes rejects.
fn label_selector_string(selector: Option<&Value>) -> Result<String, ()> {
    let Some(selector) = selector.filter(|selector| selector.is_object()) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(match_labels) = at(selector, "/matchLabels").and_then(Value::as_object) {
        for (key, value) in match_labels {
            requirements.push((
                key.clone(),
                format!("{key}={}", value.as_str().unwrap_or("")),
            ));
        }
    }
    for expression in list(selector, "/matchExpressions") {
        let key = text(expression, "/key");
        let mut values: Vec<&str> = list(expression, "/values")
            .iter()
            .map(|value| value.as_str().unwrap_or(""))
            .collect();
        values.sort_unstable();
        let rendered = match text(expression, "/operator") {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key.to_owned(), rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, rendered)| rendered)
        .collect::<Vec<_>>()
        .join(","))
}

/// Kubernetes' `metav1.FormatLabelSelector`: the selector, `<none>` when it selects by nothing,
/// `<error>` when it is invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        Ok(rendered) if rendered.is_empty() => "<none>".to_owned(),
        Ok(rendered) => rendered,
        Err(()) => "<error>".to_owned(),
    }
}

/// Kubernetes' `layoutContainerCells`: the containers' names and images, comma-separated.
fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

/// `spec.replicas`, defaulted to 1 as the API server does on create.
fn desired_replicas(object: &Value) -> i64 {
    at(object, "/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// Pod.
// ---------------------------------------------------------------------------------------------

fn pod_row(pod: &Value, now: Timestamp) -> Row {
    let phase = match text(pod, "/status/phase") {
        "" => "Pending",
        phase => phase,
    };
    let conditions = match phase {
        "Succeeded" => Some(json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }])),
        "Failed" => Some(json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Failed",
            "message": "The pod failed.",
        }])),
        _ => None,
    };
    let status = pod_status(pod, phase);
    let restarts = if status.restarts != 0
        && let Some(last) = status.last_restart
    {
        format!("{} ({} ago)", status.restarts, since(Some(last), now))
    } else {
        status.restarts.to_string()
    };

    let none_if_empty = |value: &str| {
        if value.is_empty() {
            "<none>".to_owned()
        } else {
            value.to_owned()
        }
    };
    let pod_ip = match list(pod, "/status/podIPs").first() {
        Some(first) => text(first, "/ip"),
        None => text(pod, "/status/podIP"),
    };
    let readiness_gates = list(pod, "/spec/readinessGates");
    let gates = if readiness_gates.is_empty() {
        "<none>".to_owned()
    } else {
        let pod_conditions = list(pod, "/status/conditions");
        let passed = readiness_gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, "/conditionType");
                pod_conditions
                    .iter()
                    .find(|condition| text(condition, "/type") == wanted)
                    .is_some_and(|condition| text(condition, "/status") == "True")
            })
            .count();
        format!("{passed}/{}", readiness_gates.len())
    };

    Row {
        cells: vec![
            name(pod),
            Value::from(format!("{}/{}", status.ready, status.total)),
            Value::from(status.reason),
            Value::from(restarts),
            age(pod, now),
            Value::from(none_if_empty(pod_ip)),
            Value::from(none_if_empty(text(pod, "/spec/nodeName"))),
            Value::from(none_if_empty(text(pod, "/status/nominatedNodeName"))),
            Value::from(gates),
        ],
        conditions,
    }
}

/// What `printPod` works out from a pod's containers.
struct PodStatus {
    reason: String,
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// Keeps the later of `latest` and the `lastState.terminated.finishedAt` of `container`.
fn note_restart(latest: &mut Option<Timestamp>, container: &Value) {
    if object(container, "/lastState/terminated").is_some() {
        let finished = time(container, "/lastState/terminated/finishedAt");
        if finished > *latest {
            *latest = finished;
        }
    }
}

/// Kubernetes' `printPod` status logic: the STATUS reason, ready and total containers, and the
/// restarts with the time of the last one.
fn pod_status(pod: &Value, phase: &str) -> PodStatus {
    let init_containers = list(pod, "/spec/initContainers");
    let restartable_init: BTreeSet<&str> = init_containers
        .iter()
        .filter(|container| text(container, "/restartPolicy") == "Always")
        .map(|container| text(container, "/name"))
        .collect();
    let total = list(pod, "/spec/containers").len()
        + init_containers
            .iter()
            .filter(|container| text(container, "/restartPolicy") == "Always")
            .count();
    let conditions = list(pod, "/status/conditions");
    let condition_true = |kind: &str| {
        conditions.iter().any(|condition| {
            text(condition, "/type") == kind && text(condition, "/status") == "True"
        })
    };

    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_owned(),
        reason => reason.to_owned(),
    };
    if conditions.iter().any(|condition| {
        text(condition, "/type") == "PodScheduled"
            && text(condition, "/reason") == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_owned();
    }

    let mut ready = 0;
    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let mut last_restart = None;
    let mut last_restartable_restart = None;
    let mut initializing = false;
    for (index, container) in list(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let restart_count = int(container, "/restartCount");
        restarts += restart_count;
        note_restart(&mut last_restart, container);
        let restartable = restartable_init.contains(text(container, "/name"));
        if restartable {
            restartable_restarts += restart_count;
            note_restart(&mut last_restartable_restart, container);
        }
        let terminated = object(container, "/state/terminated");
        let waiting = object(container, "/state/waiting");
        if terminated.is_some_and(|terminated| int(terminated, "/exitCode") == 0) {
            continue;
        }
        if restartable && at(container, "/started").and_then(Value::as_bool) == Some(true) {
            if flag(container, "/ready") {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            reason = match text(terminated, "/reason") {
                "" if int(terminated, "/signal") != 0 => {
                    format!("Init:Signal:{}", int(terminated, "/signal"))
                }
                "" => format!("Init:ExitCode:{}", int(terminated, "/exitCode")),
                why => format!("Init:{why}"),
            };
        } else if let Some(why) = waiting
            .map(|waiting| text(waiting, "/reason"))
            .filter(|why| !why.is_empty() && *why != "PodInitializing")
        {
            reason = format!("Init:{why}");
        } else {
            reason = format!("Init:{index}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true("Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for container in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(container, "/restartCount");
            note_restart(&mut last_restart, container);
            let waiting = object(container, "/state/waiting");
            let terminated = object(container, "/state/terminated");
            if let Some(why) = waiting
                .map(|waiting| text(waiting, "/reason"))
                .filter(|why| !why.is_empty())
            {
                reason = why.to_owned();
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, "/reason") {
                    "" if int(terminated, "/signal") != 0 => {
                        format!("Signal:{}", int(terminated, "/signal"))
                    }
                    "" => format!("ExitCode:{}", int(terminated, "/exitCode")),
                    why => why.to_owned(),
                };
            } else if flag(container, "/ready") && object(container, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if at(pod, "/metadata/deletionTimestamp").is_some() {
        if text(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_owned();
        }
    }

    PodStatus {
        reason,
        ready,
        total,
        restarts,
        last_restart,
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------------------------

fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(list(deployment, "/spec/template/spec/containers"));
    let selector = label_selector_string(at(deployment, "/spec/selector"))
        .unwrap_or_else(|()| "<invalid>".to_owned());
    vec![
        name(deployment),
        Value::from(format!(
            "{}/{}",
            int(deployment, "/status/readyReplicas"),
            desired_replicas(deployment)
        )),
        Value::from(int(deployment, "/status/updatedReplicas")),
        Value::from(int(deployment, "/status/availableReplicas")),
        age(deployment, now),
        containers,
        images,
        Value::from(selector),
    ]
}

fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(list(replica_set, "/spec/template/spec/containers"));
    vec![
        name(replica_set),
        Value::from(desired_replicas(replica_set)),
        Value::from(int(replica_set, "/status/replicas")),
        Value::from(int(replica_set, "/status/readyReplicas")),
        age(replica_set, now),
        containers,
        images,
        Value::from(format_label_selector(at(replica_set, "/spec/selector"))),
    ]
}

fn replication_controller_cells(controller: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(list(controller, "/spec/template/spec/containers"));
    vec![
        name(controller),
        Value::from(desired_replicas(controller)),
        Value::from(int(controller, "/status/replicas")),
        Value::from(int(controller, "/status/readyReplicas")),
        age(controller, now),
        containers,
        images,
        Value::from(format_labels(at(controller, "/spec/selector"))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints.
// ---------------------------------------------------------------------------------------------

/// The `type` of a Service, defaulted to `ClusterIP`.
fn service_type(service: &Value) -> &str {
    match text(service, "/spec/type") {
        "" => "ClusterIP",
        kind => kind,
    }
}

/// Kubernetes' `getServiceExternalIP` (wide, so load-balancer addresses are never clipped).
fn service_external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = list(service, "/spec/externalIPs")
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match service_type(service) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_owned()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(service, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(
                    |ingress| match (text(ingress, "/ip"), text(ingress, "/hostname")) {
                        ("", "") => None,
                        ("", hostname) => Some(hostname),
                        (ip, _) => Some(ip),
                    },
                )
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, "/spec/externalName").to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// Kubernetes' `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port.
fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = list(service, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = match text(port, "/protocol") {
                "" => "TCP",
                protocol => protocol,
            };
            let number = int(port, "/port");
            match int(port, "/nodePort") {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    }
}

fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = match list(service, "/spec/clusterIPs").first() {
        Some(first) => first.as_str().unwrap_or(""),
        None => text(service, "/spec/clusterIP"),
    };
    vec![
        name(service),
        Value::from(service_type(service)),
        Value::from(if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        }),
        Value::from(service_external_ip(service)),
        Value::from(service_ports(service)),
        age(service, now),
        Value::from(format_labels(at(service, "/spec/selector"))),
    ]
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Kubernetes' `formatEndpoints`: at most three `ip:port`, then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, "/addresses");
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(address, "/ip").to_owned());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(address, "/ip"), int(port, "/port")));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(MAX))
    } else {
        joined
    }
}

fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(endpoints),
        Value::from(format_endpoints(endpoints)),
        age(endpoints, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Nodes and namespaces.
// ---------------------------------------------------------------------------------------------

/// Kubernetes' node STATUS: `Ready`/`NotReady`/`Unknown`, then `SchedulingDisabled` if cordoned.
fn node_status(node: &Value) -> String {
    let ready = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|condition| text(condition, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(condition) if text(condition, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Kubernetes' `findNodeRoles`: `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role`.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, "/metadata/labels").and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_owned());
                }
            } else if key == "kubernetes.io/role" {
                match value.as_str() {
                    Some(role) if !role.is_empty() => {
                        roles.insert(role.to_owned());
                    }
                    _ => {}
                }
            }
        }
    }
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// The first node address of a type, or `<none>`.
fn node_address(node: &Value, kind: &str) -> String {
    list(node, "/status/addresses")
        .iter()
        .find(|address| text(address, "/type") == kind)
        .map_or_else(
            || "<none>".to_owned(),
            |address| text(address, "/address").to_owned(),
        )
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let unknown_if_empty = |pointer: &str| match text(node, pointer) {
        "" => "<unknown>".to_owned(),
        value => value.to_owned(),
    };
    vec![
        name(node),
        Value::from(node_status(node)),
        Value::from(node_roles(node)),
        age(node, now),
        Value::from(text(node, "/status/nodeInfo/kubeletVersion")),
        Value::from(node_address(node, "InternalIP")),
        Value::from(node_address(node, "ExternalIP")),
        Value::from(unknown_if_empty("/status/nodeInfo/osImage")),
        Value::from(unknown_if_empty("/status/nodeInfo/kernelVersion")),
        Value::from(unknown_if_empty("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    let phase = match text(namespace, "/status/phase") {
        "" => "Active",
        phase => phase,
    };
    vec![name(namespace), Value::from(phase), age(namespace, now)]
}

// ---------------------------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------------------------

/// The fields `printEvent` reads, from either API of events (`v1` or `events.k8s.io/v1`).
struct CoreEvent<'a> {
    name: &'a str,
    kind: &'a str,
    reason: &'a str,
    message: &'a str,
    involved_kind: &'a str,
    involved_name: &'a str,
    field_path: &'a str,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    first_timestamp: Option<Timestamp>,
    last_timestamp: Option<Timestamp>,
    event_time: Option<Timestamp>,
    count: i64,
    series: Option<(i64, Option<Timestamp>)>,
}

impl<'a> CoreEvent<'a> {
    fn from_core(event: &'a Value) -> CoreEvent<'a> {
        CoreEvent {
            name: text(event, "/metadata/name"),
            kind: text(event, "/type"),
            reason: text(event, "/reason"),
            message: text(event, "/message"),
            involved_kind: text(event, "/involvedObject/kind"),
            involved_name: text(event, "/involvedObject/name"),
            field_path: text(event, "/involvedObject/fieldPath"),
            source_component: text(event, "/source/component"),
            source_host: text(event, "/source/host"),
            reporting_controller: text(event, "/reportingComponent"),
            reporting_instance: text(event, "/reportingInstance"),
            first_timestamp: time(event, "/firstTimestamp"),
            last_timestamp: time(event, "/lastTimestamp"),
            event_time: time(event, "/eventTime"),
            count: int(event, "/count"),
            series: object(event, "/series")
                .map(|series| (int(series, "/count"), time(series, "/lastObservedTime"))),
        }
    }

    fn from_events_v1(event: &'a Value) -> CoreEvent<'a> {
        CoreEvent {
            name: text(event, "/metadata/name"),
            kind: text(event, "/type"),
            reason: text(event, "/reason"),
            message: text(event, "/note"),
            involved_kind: text(event, "/regarding/kind"),
            involved_name: text(event, "/regarding/name"),
            field_path: text(event, "/regarding/fieldPath"),
            source_component: text(event, "/deprecatedSource/component"),
            source_host: text(event, "/deprecatedSource/host"),
            reporting_controller: text(event, "/reportingController"),
            reporting_instance: text(event, "/reportingInstance"),
            first_timestamp: time(event, "/deprecatedFirstTimestamp"),
            last_timestamp: time(event, "/deprecatedLastTimestamp"),
            event_time: time(event, "/eventTime"),
            count: int(event, "/deprecatedCount"),
            series: object(event, "/series")
                .map(|series| (int(series, "/count"), time(series, "/lastObservedTime"))),
        }
    }
}

fn event_cells(event: &CoreEvent<'_>, now: Timestamp) -> Vec<Value> {
    let first_seen = match event.first_timestamp {
        Some(first) => since(Some(first), now),
        None => since(event.event_time, now),
    };
    let mut last_seen = match event.last_timestamp {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = event.count;
    if let Some((series_count, last_observed)) = event.series {
        last_seen = since(last_observed, now);
        count = series_count;
    } else if count == 0 {
        count = 1;
    }
    let target = if event.involved_name.is_empty() {
        event.involved_kind.to_lowercase()
    } else {
        format!(
            "{}/{}",
            event.involved_kind.to_lowercase(),
            event.involved_name
        )
    };
    let component = if event.source_component.is_empty() {
        event.reporting_controller
    } else {
        event.source_component
    };
    let instance = if event.source_host.is_empty() {
        event.reporting_instance
    } else {
        event.source_host
    };
    let source = if instance.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        Value::from(last_seen),
        Value::from(event.kind),
        Value::from(event.reason),
        Value::from(target),
        Value::from(event.field_path),
        Value::from(source),
        Value::from(event.message.trim()),
        Value::from(first_seen),
        Value::from(count),
        Value::from(event.name),
    ]
}

// ---------------------------------------------------------------------------------------------
// Configuration, identity, coordination, scheduling, and everything else.
// ---------------------------------------------------------------------------------------------

fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let data = map_len(config_map, "/data") + map_len(config_map, "/binaryData");
    vec![name(config_map), Value::from(data), age(config_map, now)]
}

fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    let kind = match text(secret, "/type") {
        "" => "Opaque",
        kind => kind,
    };
    vec![
        name(secret),
        Value::from(kind),
        Value::from(map_len(secret, "/data")),
        age(secret, now),
    ]
}

fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(account),
        Value::from(list(account, "/secrets").len()),
        age(account, now),
    ]
}

fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        Value::from(text(lease, "/spec/holderIdentity")),
        age(lease, now),
    ]
}

fn priority_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class),
        Value::from(int(class, "/value")),
        Value::from(flag(class, "/globalDefault")),
        age(class, now),
        Value::from(text(class, "/preemptionPolicy")),
    ]
}

/// Kubernetes' `convertToHumanReadableDateType`: the creation time in RFC 3339, UTC, to the
/// second, or `<unknown>`.
fn created_at(object: &Value) -> Value {
    Value::from(time(object, "/metadata/creationTimestamp").map_or_else(
        || "<unknown>".to_owned(),
        |created| created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ))
}

/// Role and ClusterRole (Kubernetes' `printRole`, `printClusterRole`).
fn role_cells(role: &Value) -> Vec<Value> {
    vec![name(role), created_at(role)]
}

/// RoleBinding and ClusterRoleBinding (Kubernetes' `printRoleBinding`,
/// `printClusterRoleBinding`): the role as `Kind/name`, and the subjects by kind as
/// `rbac.SubjectsStrings` lists them: users and groups by name, service accounts as
/// `namespace/name`; subjects of other kinds are not shown.
fn role_binding_cells(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(binding, "/roleRef/kind"),
        text(binding, "/roleRef/name")
    );
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in list(binding, "/subjects") {
        let name = text(subject, "/name");
        match text(subject, "/kind") {
            "User" => users.push(name.to_owned()),
            "Group" => groups.push(name.to_owned()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{name}", text(subject, "/namespace")));
            }
            _ => {}
        }
    }
    vec![
        name(binding),
        Value::from(role),
        age(binding, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(service_accounts.join(", ")),
    ]
}

/// A custom resource's row: its name, and its age (`null`, printed `<none>`, without a
/// creation timestamp, as the custom resource printer leaves a cell its JSONPath does not find).
fn default_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let age = time(object, "/metadata/creationTimestamp").map_or(Value::Null, |created| {
        Value::from(since(Some(created), now))
    });
    vec![name(object), age]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn resource(group: &str, kind: &str) -> ApiResource {
        let version = "v1";
        ApiResource::new(group, version, kind, None, true)
    }

    fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
        let answer = table(
            &resource(group, kind),
            &[object],
            json!({}),
            IncludeObject::None,
            now(),
        );
        answer["rows"][0]["cells"].as_array().unwrap().clone()
    }

    fn strings(cells: &[Value]) -> Vec<String> {
        cells
            .iter()
            .map(|cell| match cell {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    fn pod(status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            "status": status,
        })
    }

    fn pod_cells(status: Value) -> Vec<String> {
        strings(&cells("", "Pod", pod(status)))
    }

    #[test]
    fn human_duration_matches_kubernetes() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 30 * 60, "5h30m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (775 * 86400, "2y45d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}s"
            );
        }
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn age_is_unknown_without_creation_timestamp() {
        let object = json!({"metadata": {"name": "cm"}, "data": {"a": "1"}});
        assert_eq!(
            strings(&cells("", "ConfigMap", object)),
            ["cm", "1", "<unknown>"]
        );
    }

    #[test]
    fn pod_running_is_ready() {
        let cells = pod_cells(json!({
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-06-01T11:55:10Z"}}}],
        }));
        assert_eq!(
            cells,
            [
                "web-1",
                "1/1",
                "Running",
                "0",
                "5m",
                "10.244.0.5",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_pending_and_container_creating() {
        let pending = pod_cells(json!({"phase": "Pending"}));
        assert_eq!(pending[1..4], ["0/1", "Pending", "0"]);
        let no_status = strings(&cells(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}),
        ));
        assert_eq!(no_status[1..4], ["0/1", "Pending", "0"]);
        let creating = pod_cells(json!({
            "phase": "Pending",
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}],
        }));
        assert_eq!(creating[1..4], ["0/1", "ContainerCreating", "0"]);
    }

    #[test]
    fn pod_crash_loop_back_off_shows_restarts_with_age() {
        let cells = pod_cells(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "web", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-06-01T11:55:00Z"}},
            }],
        }));
        assert_eq!(cells[1..4], ["0/1", "CrashLoopBackOff", "3 (5m ago)"]);
    }

    #[test]
    fn pod_restarts_without_a_termination_time_show_the_count_only() {
        let cells = pod_cells(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 2, "state": {"running": {}}}],
        }));
        assert_eq!(cells[1..4], ["1/1", "Running", "2"]);
    }

    #[test]
    fn pod_completed_and_failed() {
        let completed = pod_cells(json!({
            "phase": "Succeeded",
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        }));
        assert_eq!(completed[1..4], ["0/1", "Completed", "0"]);
        let answer = table(
            &resource("", "Pod"),
            &[pod(json!({"phase": "Succeeded"}))],
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert_eq!(answer["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let error = pod_cells(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
        }));
        assert_eq!(error[2], "Error");
        let exit_code = pod_cells(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}],
        }));
        assert_eq!(exit_code[2], "ExitCode:137");
        let signal = pod_cells(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "signal": 9}}}],
        }));
        assert_eq!(signal[2], "Signal:9");
        let evicted = pod_cells(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(evicted[2], "Evicted");
    }

    #[test]
    fn pod_completed_container_beside_a_running_one() {
        let status = |ready: &str| {
            json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}},
                ],
            })
        };
        let mut two = pod(status("True"));
        two["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(
            strings(&cells("", "Pod", two.clone()))[1..3],
            ["1/2", "Running"]
        );
        two["status"] = status("False");
        assert_eq!(strings(&cells("", "Pod", two))[1..3], ["1/2", "NotReady"]);
    }

    #[test]
    fn pod_terminating_and_node_lost() {
        let mut terminating = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        }));
        terminating["metadata"]["deletionTimestamp"] = json!("2025-06-01T11:59:30Z");
        assert_eq!(
            strings(&cells("", "Pod", terminating.clone()))[2],
            "Terminating"
        );
        terminating["status"]["reason"] = json!("NodeLost");
        assert_eq!(
            strings(&cells("", "Pod", terminating.clone()))[2],
            "Unknown"
        );
        terminating["status"] = json!({"phase": "Succeeded"});
        assert_eq!(strings(&cells("", "Pod", terminating))[2], "Succeeded");
    }

    #[test]
    fn pod_init_containers() {
        let with_init = |init_statuses: Value, conditions: Value| {
            let mut pod = pod(json!({
                "phase": "Pending",
                "conditions": conditions,
                "initContainerStatuses": init_statuses,
                "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            }));
            pod["spec"]["initContainers"] = json!([{"name": "one"}, {"name": "two"}]);
            strings(&cells("", "Pod", pod))
        };
        let running_first = with_init(
            json!([
                {"name": "one", "ready": false, "restartCount": 0, "state": {"running": {}}},
                {"name": "two", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
            ]),
            json!([]),
        );
        assert_eq!(running_first[1..4], ["0/1", "Init:0/2", "0"]);
        let second = with_init(
            json!([
                {"name": "one", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "two", "ready": false, "restartCount": 0, "state": {"running": {}}},
            ]),
            json!([]),
        );
        assert_eq!(second[2], "Init:1/2");
        let crashing = with_init(
            json!([{
                "name": "one", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:58:00Z"}},
            }]),
            json!([]),
        );
        assert_eq!(crashing[2..4], ["Init:CrashLoopBackOff", "4 (2m ago)"]);
        let failed = with_init(
            json!([{"name": "one", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]),
            json!([]),
        );
        assert_eq!(failed[2], "Init:ExitCode:2");
        let errored = with_init(
            json!([{"name": "one", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]),
            json!([]),
        );
        assert_eq!(errored[2], "Init:Error");
        let done = with_init(
            json!([
                {"name": "one", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "two", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]),
            json!([{"type": "Initialized", "status": "True"}]),
        );
        assert_eq!(done[2], "PodInitializing");
    }

    #[test]
    fn pod_sidecar_counts_as_a_container() {
        let mut sidecar = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:50:00Z"}}}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        }));
        sidecar["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(
            strings(&cells("", "Pod", sidecar))[1..4],
            ["2/2", "Running", "1 (10m ago)"]
        );
    }

    #[test]
    fn pod_scheduling_gated_and_wide_columns() {
        let mut gated = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        }));
        gated["spec"]["nodeName"] = json!("node-1");
        gated["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        gated["status"]["nominatedNodeName"] = json!("node-2");
        gated["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "example.com/lb", "status": "True"}));
        gated["status"]["podIPs"] = json!([{"ip": "fd00::5"}, {"ip": "10.0.0.5"}]);
        assert_eq!(
            strings(&cells("", "Pod", gated))[2..],
            [
                "SchedulingGated",
                "0",
                "5m",
                "fd00::5",
                "node-1",
                "node-2",
                "1/2"
            ]
        );
    }

    #[test]
    fn deployment_cells_and_selector() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-05-30T09:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "tier": "front"},
                             "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        let cells = cells("apps", "Deployment", deployment);
        assert_eq!(cells[2], json!(3));
        assert_eq!(
            strings(&cells),
            [
                "web",
                "2/3",
                "3",
                "2",
                "2d3h",
                "web,log",
                "nginx,busybox",
                "app=web,env in (dev,prod),tier=front"
            ]
        );
        let bare = cells_of_bare("apps", "Deployment");
        assert_eq!(bare, ["x", "0/1", "0", "0", "<unknown>", "", "", ""]);
    }

    fn cells_of_bare(group: &str, kind: &str) -> Vec<String> {
        strings(&cells(group, kind, json!({"metadata": {"name": "x"}})))
    }

    #[test]
    fn replica_set_and_replication_controller_cells() {
        let replica_set = json!({
            "metadata": {"name": "web-5d4f", "creationTimestamp": "2025-06-01T11:59:50Z"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            strings(&cells("apps", "ReplicaSet", replica_set)),
            ["web-5d4f", "2", "2", "1", "10s", "web", "nginx", "app=web"]
        );
        assert_eq!(
            cells_of_bare("apps", "ReplicaSet"),
            ["x", "1", "0", "0", "<unknown>", "", "", "<none>"]
        );
        let controller = json!({
            "metadata": {"name": "rc"},
            "spec": {"replicas": 0, "selector": {"b": "2", "a": "1"}},
        });
        assert_eq!(
            strings(&cells("", "ReplicationController", controller)),
            ["rc", "0", "0", "0", "<unknown>", "", "", "a=1,b=2"]
        );
    }

    #[test]
    fn label_selectors_format_as_kubernetes() {
        let selector = json!({"matchExpressions": [
            {"key": "b", "operator": "Exists"},
            {"key": "a", "operator": "DoesNotExist"},
            {"key": "c", "operator": "NotIn", "values": ["y", "x"]},
        ]});
        assert_eq!(format_label_selector(Some(&selector)), "!a,b,c notin (x,y)");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
    }

    #[test]
    fn service_ports_and_external_ips() {
        let service = |spec: Value, status: Value| {
            strings(&cells(
                "",
                "Service",
                json!({"metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:00:00Z"}, "spec": spec, "status": status}),
            ))
        };
        assert_eq!(
            service(
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                       "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                       "selector": {"app": "web"}}),
                json!({})
            ),
            [
                "web",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "80/TCP,53/UDP",
                "60m",
                "app=web"
            ]
        );
        assert_eq!(
            service(
                json!({"type": "NodePort", "clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 30080}]}),
                json!({})
            )[1..5],
            ["NodePort", "10.96.0.11", "<none>", "80:30080/TCP"]
        );
        assert_eq!(
            service(
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": [{"port": 443, "nodePort": 31443}],
                       "externalIPs": ["192.0.2.9"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}})
            )[3],
            "203.0.113.7,lb.example.com,192.0.2.9"
        );
        assert_eq!(
            service(
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.13"}),
                json!({})
            )[3..5],
            ["<pending>", "<none>"]
        );
        assert_eq!(
            service(
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({})
            )[1..4],
            ["ExternalName", "<none>", "db.example.com"]
        );
        assert_eq!(
            service(
                json!({"clusterIP": "None", "ports": [{"port": 5432}]}),
                json!({})
            )[1..5],
            ["ClusterIP", "None", "<none>", "5432/TCP"]
        );
    }

    #[test]
    fn endpoints_cells() {
        let endpoints = json!({
            "metadata": {"name": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
                "ports": [{"name": "http", "port": 8080}],
            }],
        });
        assert_eq!(
            strings(&cells("", "Endpoints", endpoints))[1],
            "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more..."
        );
        assert_eq!(cells_of_bare("", "Endpoints")[1], "<none>");
        let headless =
            json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
        assert_eq!(strings(&cells("", "Endpoints", headless))[1], "10.0.0.9");
    }

    #[test]
    fn node_cells() {
        let node = json!({
            "metadata": {"name": "node-1", "creationTimestamp": "2025-05-01T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                                    "kubernetes.io/role": "master", "kubernetes.io/hostname": "node-1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "orchestra://0.1.0"},
            },
        });
        assert_eq!(
            strings(&cells("", "Node", node)),
            [
                "node-1",
                "Ready,SchedulingDisabled",
                "control-plane,master,worker",
                "31d",
                "v1.32.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "orchestra://0.1.0"
            ]
        );
        let not_ready = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            strings(&cells("", "Node", not_ready))[1..3],
            ["NotReady", "<none>"]
        );
        assert_eq!(
            cells_of_bare("", "Node")[1..],
            [
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn namespace_cells() {
        let terminating = json!({"metadata": {"name": "old", "creationTimestamp": "2025-06-01T09:00:00Z"}, "status": {"phase": "Terminating"}});
        assert_eq!(
            strings(&cells("", "Namespace", terminating)),
            ["old", "Terminating", "3h"]
        );
        assert_eq!(cells_of_bare("", "Namespace")[1], "Active");
    }

    #[test]
    fn core_event_cells() {
        let event = json!({
            "metadata": {"name": "web-1.17f3a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-06-01T11:50:00Z", "lastTimestamp": "2025-06-01T11:58:00Z", "count": 4,
        });
        assert_eq!(
            strings(&cells("", "Event", event)),
            [
                "2m",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, node-1",
                "Successfully pulled image \"nginx\"",
                "10m",
                "4",
                "web-1.17f3a"
            ]
        );
        let new_style = json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Node"},
            "reason": "Starting", "type": "Normal", "message": "",
            "eventTime": "2025-06-01T11:59:00.123456Z", "reportingComponent": "orchestra-agent",
        });
        assert_eq!(
            strings(&cells("", "Event", new_style)),
            [
                "59s",
                "Normal",
                "Starting",
                "node",
                "",
                "orchestra-agent",
                "",
                "59s",
                "1",
                "e"
            ]
        );
        let series = json!({
            "metadata": {"name": "s"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2025-06-01T11:00:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2025-06-01T11:59:55.000000Z"},
        });
        let series_cells = strings(&cells("", "Event", series));
        assert_eq!(series_cells[0], "5s");
        assert_eq!(series_cells[7..9], ["60m", "7"]);
    }

    #[test]
    fn events_v1_event_cells() {
        let event = json!({
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "type": "Normal", "note": "Scaled up replica set web-5d4f to 3",
            "eventTime": "2025-06-01T11:57:00.000000Z", "reportingController": "deployment-controller",
            "reportingInstance": "cp-1",
        });
        assert_eq!(
            strings(&cells("events.k8s.io", "Event", event)),
            [
                "3m",
                "Normal",
                "ScalingReplicaSet",
                "deployment/web",
                "",
                "deployment-controller, cp-1",
                "Scaled up replica set web-5d4f to 3",
                "3m",
                "1",
                "e2"
            ]
        );
    }

    #[test]
    fn config_map_secret_service_account_cells() {
        let config_map = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            strings(&cells("", "ConfigMap", config_map))[..2],
            ["cfg", "3"]
        );
        assert_eq!(cells("", "ConfigMap", json!({}))[1], json!(0));
        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            strings(&cells("", "Secret", secret))[..3],
            ["tls", "kubernetes.io/tls", "2"]
        );
        assert_eq!(cells_of_bare("", "Secret")[1..3], ["Opaque", "0"]);
        let account =
            json!({"metadata": {"name": "default"}, "secrets": [{"name": "default-token"}]});
        assert_eq!(
            strings(&cells("", "ServiceAccount", account))[..2],
            ["default", "1"]
        );
    }

    #[test]
    fn lease_and_priority_class_cells() {
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp-1_4b2c"}});
        assert_eq!(
            strings(&cells("coordination.k8s.io", "Lease", lease))[..2],
            ["kube-scheduler", "cp-1_4b2c"]
        );
        assert_eq!(cells_of_bare("coordination.k8s.io", "Lease")[1], "");
        let class = json!({
            "metadata": {"name": "system-cluster-critical", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "value": 2_000_000_000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority",
        });
        let cells = cells("scheduling.k8s.io", "PriorityClass", class);
        assert_eq!(
            cells,
            vec![
                json!("system-cluster-critical"),
                json!(2_000_000_000),
                json!(false),
                json!("60s"),
                json!("PreemptLowerPriority")
            ]
        );
    }

    fn column_names(group: &str, kind: &str) -> Vec<(String, u64)> {
        let answer = table(
            &resource(group, kind),
            &[],
            json!({}),
            IncludeObject::None,
            now(),
        );
        answer["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_owned(),
                    c["priority"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn role_and_cluster_role_cells() {
        const RBAC: &str = "rbac.authorization.k8s.io";
        for kind in ["Role", "ClusterRole"] {
            assert_eq!(
                column_names(RBAC, kind),
                [("Name".to_owned(), 0), ("Created At".to_owned(), 0)]
            );
            let role = json!({
                "metadata": {"name": "system:monitoring", "creationTimestamp": "2025-06-01T11:59:00Z"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            });
            assert_eq!(
                cells(RBAC, kind, role),
                [json!("system:monitoring"), json!("2025-06-01T11:59:00Z")]
            );
            assert_eq!(cells_of_bare(RBAC, kind), ["x", "<unknown>"]);
        }
        let answer = table(
            &resource(RBAC, "Role"),
            &[],
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert_eq!(answer["columnDefinitions"][1]["type"], "date");
    }

    #[test]
    fn role_binding_and_cluster_role_binding_cells() {
        const RBAC: &str = "rbac.authorization.k8s.io";
        let expected_columns: Vec<(String, u64)> = [
            ("Name", 0),
            ("Role", 0),
            ("Age", 0),
            ("Users", 1),
            ("Groups", 1),
            ("ServiceAccounts", 1),
        ]
        .iter()
        .map(|(name, priority)| ((*name).to_owned(), *priority))
        .collect();
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            assert_eq!(column_names(RBAC, kind), expected_columns, "{kind}");
            let binding = json!({
                "metadata": {"name": "readers", "creationTimestamp": "2025-06-01T11:55:00Z"},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
                "subjects": [
                    {"kind": "User", "apiGroup": RBAC, "name": "alice"},
                    {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"},
                    {"kind": "Group", "apiGroup": RBAC, "name": "system:authenticated"},
                    {"kind": "User", "apiGroup": RBAC, "name": "bob"},
                    {"kind": "ServiceAccount", "name": "default"},
                    {"kind": "Robot", "name": "r2"},
                ],
            });
            assert_eq!(
                strings(&cells(RBAC, kind, binding)),
                [
                    "readers",
                    "ClusterRole/view",
                    "5m",
                    "alice, bob",
                    "system:authenticated",
                    "ci/builder, /default",
                ],
                "{kind}"
            );
            assert_eq!(
                cells_of_bare(RBAC, kind),
                ["x", "/", "<unknown>", "", "", ""],
                "{kind}"
            );
        }
    }

    #[test]
    fn custom_resources_get_name_and_age() {
        let answer = table(
            &resource("example.com", "Widget"),
            &[
                json!({"metadata": {"name": "w", "creationTimestamp": "2025-06-01T11:00:00Z"}}),
                json!({"metadata": {"name": "v"}}),
            ],
            json!({}),
            IncludeObject::None,
            now(),
        );
        let columns = answer["columnDefinitions"].as_array().unwrap();
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[1]["name"], "Age");
        assert_eq!(columns[1]["type"], "date");
        assert_eq!(answer["rows"][0]["cells"], json!(["w", "60m"]));
        assert_eq!(answer["rows"][1]["cells"], json!(["v", null]));
    }

    #[test]
    fn table_shape_and_include_object() {
        let object = pod(json!({"phase": "Running"}));
        let resource = resource("", "Pod");
        let metadata = table(
            &resource,
            std::slice::from_ref(&object),
            json!({"resourceVersion": "17", "continue": "", "remainingItemCount": null}),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(metadata["kind"], "Table");
        assert_eq!(metadata["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(metadata["metadata"], json!({"resourceVersion": "17"}));
        let columns = metadata["columnDefinitions"].as_array().unwrap();
        let names: Vec<&str> = columns
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(columns[0]["format"], "name");
        assert_eq!(columns[0]["priority"], 0);
        assert_eq!(columns[5]["priority"], 1);
        assert_eq!(columns[1]["format"], "");
        assert_eq!(
            metadata["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
        );
        let whole = table(
            &resource,
            std::slice::from_ref(&object),
            Value::Null,
            IncludeObject::Object,
            now(),
        );
        assert_eq!(whole["rows"][0]["object"], object);
        assert_eq!(whole["metadata"], json!({}));
        let none = table(
            &resource,
            std::slice::from_ref(&object),
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert!(none["rows"][0].get("object").is_none());
        let empty = table(&resource, &[], json!({}), IncludeObject::Metadata, now());
        assert_eq!(empty["rows"], json!([]));
        for printer_kind in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("", "ReplicationController"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("coordination.k8s.io", "Lease"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("example.com", "Widget"),
        ] {
            let answer = table(
                &resource_of(printer_kind),
                &[
                    json!({}),
                    json!(null),
                    json!({"metadata": 5, "spec": [], "status": "x"}),
                ],
                json!({}),
                IncludeObject::Metadata,
                now(),
            );
            let width = answer["columnDefinitions"].as_array().unwrap().len();
            for row in answer["rows"].as_array().unwrap() {
                assert_eq!(
                    row["cells"].as_array().unwrap().len(),
                    width,
                    "{printer_kind:?}"
                );
            }
        }
    }

    fn resource_of((group, kind): (&str, &str)) -> ApiResource {
        resource(group, kind)
    }

    #[test]
    fn include_object_from_query() {
        assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
        assert_eq!(IncludeObject::from_query(Some("")), IncludeObject::Metadata);
        assert_eq!(
            IncludeObject::from_query(Some("Metadata")),
            IncludeObject::Metadata
        );
        assert_eq!(IncludeObject::from_query(Some("None")), IncludeObject::None);
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            IncludeObject::Object
        );
        assert_eq!(
            IncludeObject::from_query(Some("object")),
            IncludeObject::Metadata
        );
        assert_eq!(
            IncludeObject::try_from_query(None),
            Ok(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::try_from_query(Some("None")),
            Ok(IncludeObject::None)
        );
        let error = IncludeObject::try_from_query(Some("object")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unrecognized includeObject value: \"object\""
        );
    }

    #[test]
    fn accept_header_detection() {
        assert!(accepts_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(accepts_table(
            "application/json; as=Table; g=meta.k8s.io; v=v1beta1"
        ));
        assert!(!accepts_table(
            "application/json;as=Table;v=v2;g=meta.k8s.io"
        ));
        assert!(!accepts_table(
            "application/yaml;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(!accepts_table(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }
}
