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
//! stream starts (`ResponseStarted`). Lines are buffered in memory and appended to the file
//! (opened in append mode) by a writer thread every 10 ms, whole.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::{RequestIdentity, RequestInfo};

/// How often the writer thread appends what requests have logged.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Where audit lines go: a file, written by a thread of its own so that requests never wait
/// for the disk (nor wake a thread): requests append their lines to a buffer, which the writer
/// takes and appends to the file every 10 ms; the last clone of the log to go
/// writes what is left.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    shared: std::sync::Arc<Shared>,
}

/// What the log's clones and its writer thread share.
struct Shared {
    pending: std::sync::Mutex<Vec<u8>>,
    file: std::sync::Mutex<File>,
}

impl Shared {
    /// Appends what was logged to the file.
    fn flush(&self, path: &Path) {
        let batch = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if batch.is_empty() {
            return;
        }
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A line that cannot be written must not fail the request it records.
        if let Err(error) = file.write_all(&batch) {
            eprintln!("audit log {}: {error}", path.display());
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Appends to the file at `path` (created, only its owner may read it). The writer thread
    /// ends once the last clone of the log is dropped.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or the writer thread cannot be started.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let shared = std::sync::Arc::new(Shared {
            pending: std::sync::Mutex::new(Vec::new()),
            file: std::sync::Mutex::new(file),
        });
        let writer = std::sync::Arc::clone(&shared);
        let shown = path.to_owned();
        std::thread::Builder::new()
            .name("audit-log".to_owned())
            .spawn(move || {
                // Every interval, until no log is left but the thread's own reference.
                while std::sync::Arc::strong_count(&writer) > 1 {
                    std::thread::sleep(WRITE_INTERVAL);
                    writer.flush(&shown);
                }
            })?;
        Ok(AuditLog {
            path: path.to_owned(),
            shared,
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs one event.
    fn write(&self, event: &Value) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *pending, event);
        pending.push(b'\n');
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // The last log (beside the writer thread's reference) writes what is left, so that a
        // process stopping right after does not lose the last lines.
        if std::sync::Arc::strong_count(&self.shared) <= 2 {
            self.shared.flush(&self.path);
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn every_request_is_a_line_written_by_the_time_the_log_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let router = Router::new()
            .route("/api/v1/namespaces/a/pods", get(|| async { "[]" }))
            .layer(axum::middleware::from_fn_with_state(log.clone(), audit));
        for uri in ["/api/v1/namespaces/a/pods?limit=5", "/healthz"] {
            let request = http::Request::get(uri)
                .header("user-agent", "test/1")
                .body(Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        drop(router);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        assert_eq!(events[0]["kind"], "Event");
        assert_eq!(events[0]["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(events[0]["verb"], "list");
        assert_eq!(events[0]["objectRef"]["resource"], "pods");
        assert_eq!(events[0]["objectRef"]["namespace"], "a");
        assert_eq!(events[0]["responseStatus"]["code"], 200);
        assert_eq!(events[0]["userAgent"], "test/1");
        assert!(
            events[0].get("user").is_none(),
            "no authentication layer, no user"
        );
        assert_eq!(events[1]["verb"], "get");
        assert_eq!(events[1]["requestURI"], "/healthz");
        assert_eq!(events[1]["responseStatus"]["code"], 404);
        assert!(events[1].get("objectRef").is_none());
    }
}
