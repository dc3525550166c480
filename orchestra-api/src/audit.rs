//! The audit log: one JSON line per request saying who did what and how it ended, in the shape
//! of Kubernetes' `audit.k8s.io/v1` `Event` at the `Metadata` level.
//!
//! ```text
//! {"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"…",
//!  "stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500",
//!  "verb":"list","user":{"username":"admin","groups":["system:masters","system:authenticated"]},
//!  "userAgent":"kubectl/v1.33.0","objectRef":{"resource":"pods","namespace":"default",
//!  "apiVersion":"v1"},"responseStatus":{"code":200},
//!  "requestReceivedTimestamp":"…","stageTimestamp":"…"}
//! ```
//!
//! [`audit`] is the outermost middleware, so that it sees every request, the ones refused by
//! authentication (no `user`) or authorization (`403`) included. The user (and, for an
//! impersonated request, the `impersonatedUser`) and the request's verb and object come from the
//! [`RequestIdentity`] the authorization layer puts on the response. A watch is logged when its
//! stream starts (`ResponseStarted`). Lines are appended to a file opened in append mode, one
//! `write` each, so that concurrent requests never interleave within a line.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::{RequestIdentity, RequestInfo};

/// Where audit lines go.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Appends to the file at `path` (created, only its owner may read it).
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as a line.
    fn write(&self, event: &Value) {
        let mut line = event.to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // An audit line that cannot be written must not fail the request it records; the
        // error is reported on standard error instead.
        if let Err(error) = file.write_all(line.as_bytes()) {
            eprintln!("audit log {}: {error}", self.path.display());
        }
    }
}

fn user_json(user: &UserInfo) -> Value {
    let mut value = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        value["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        value["extra"] = json!(user.extra);
    }
    value
}

fn object_ref(info: &RequestInfo) -> Option<Value> {
    if !info.is_resource_request {
        return None;
    }
    let mut value = json!({"resource": info.resource, "apiVersion": info.api_version});
    if !info.api_group.is_empty() {
        value["apiGroup"] = json!(info.api_group);
    }
    if let Some(namespace) = &info.namespace {
        value["namespace"] = json!(namespace);
    }
    if let Some(name) = &info.name {
        value["name"] = json!(name);
    }
    if let Some(subresource) = &info.subresource {
        value["subresource"] = json!(subresource);
    }
    Some(value)
}

/// The axum middleware: see the [module documentation](self). Use it with
/// [`axum::middleware::from_fn_with_state`] as the outermost layer.
pub async fn audit(State(log): State<AuditLog>, request: Request, next: Next) -> Response {
    let received = Timestamp::now();
    let uri = request.uri().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    let response = next.run(request).await;
    let identity = response.extensions().get::<RequestIdentity>();
    let info = identity
        .and_then(|identity| identity.info.clone())
        .unwrap_or_else(|| RequestInfo::parse(&method, &path, query.as_deref()));
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": if info.verb == "watch" && response.status().is_success() {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        },
        "requestURI": uri,
        "verb": info.verb,
        "responseStatus": {"code": response.status().as_u16()},
        "requestReceivedTimestamp": received.to_string(),
        "stageTimestamp": Timestamp::now().to_string(),
    });
    if let Some(identity) = identity {
        event["user"] = user_json(&identity.caller);
        if identity.caller != identity.user {
            event["impersonatedUser"] = user_json(&identity.user);
        }
    }
    if let Some(object) = object_ref(&info) {
        event["objectRef"] = object;
    }
    if let Some(agent) = user_agent {
        event["userAgent"] = json!(agent);
    }
    if let Some(source) = source {
        event["sourceIPs"] = json!([source]);
    }
    log.write(&event);
    response
}
