//! The remote client: [`Api<K>`](orchestra_core::api::Api) over HTTP, for controllers,
//! schedulers and node agents that run in another process than the API server.
//!
//! [`HttpTransport`] implements `orchestra-core`'s [`Transport`] by speaking Kubernetes' REST API
//! — the same requests `kubectl` and client-go send — so it works against an Orchestra server and,
//! for the kinds both serve, against Kubernetes itself. [`RemoteConfig::client`] wraps it in a
//! [`Client`]:
//!
//! ```no_run
//! use orchestra_api::remote::RemoteConfig;
//! use orchestra_core::api::{Api, ListParams};
//! use orchestra_core::k8s::api::core::v1::Pod;
//!
//! # #[allow(dead_code)]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RemoteConfig::from_kubeconfig("/root/.orchestra/kubeconfig".as_ref())?.client()?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! for pod in pods.list(&ListParams::default()).await? {
//!     println!("{:?}", pod.metadata.name);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Requests other than watches time out after [`REQUEST_TIMEOUT`] (a 504 `Timeout` error);
//! connection failures are 503 `ServiceUnavailable`, so that controllers retry them as they
//! retry a busy server. A watch whose connection breaks ends, and the informer watching starts
//! a new one from the last resource version it saw, as client-go's reflector does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use orchestra_core::api::{
    Client, DeleteParams, Deletion, ListParams, ObjectList, PatchParams, PostParams, Subresource,
    Transport, VersionMatch, WatchEvent, WatchParams,
};
use orchestra_core::resource::{ApiResource, DynamicObject};
use orchestra_core::scheme::Scheme;
use orchestra_core::status::{StatusError, StatusReason};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::kubeconfig;
use crate::tls;

/// How long a request other than a watch may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The characters a query value keeps as they are (RFC 3986's unreserved set).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the API server is and how to reach it.
#[derive(Clone, Debug, Default)]
pub struct RemoteConfig {
    /// The server's URL (`https://127.0.0.1:6443`).
    pub server: String,
    /// The CA the server's certificate must chain to (PEM); needed for `https`.
    pub ca_pem: Option<String>,
    /// The bearer token to authenticate with.
    pub token: Option<String>,
}

/// A remote client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The kubeconfig could not be read.
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(String),
    /// The TLS settings are unusable.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The server URL is not one.
    #[error("invalid server URL {url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

impl RemoteConfig {
    /// The server, CA and token of a kubeconfig's current context.
    pub fn from_kubeconfig(path: &Path) -> Result<RemoteConfig, RemoteError> {
        let access = kubeconfig::read(path).map_err(|e| RemoteError::Kubeconfig(e.to_string()))?;
        Ok(RemoteConfig {
            server: access.server,
            ca_pem: access.ca_pem,
            token: access.token,
        })
    }

    /// The transport these settings describe.
    pub fn transport(&self) -> Result<HttpTransport, RemoteError> {
        HttpTransport::new(self)
    }

    /// A [`Client`] of the server, knowing the built-in kinds.
    pub fn client(&self) -> Result<Client, RemoteError> {
        self.client_with(Scheme::default())
    }

    /// A [`Client`] of the server, knowing the kinds of `scheme` (custom resources too).
    pub fn client_with(&self, scheme: Scheme) -> Result<Client, RemoteError> {
        Ok(Client::remote(Arc::new(self.transport()?), scheme))
    }
}

/// Kubernetes' REST API as a [`Transport`]; see the [module documentation](self).
#[derive(Clone)]
pub struct HttpTransport {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: Option<HeaderValue>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("server", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn unavailable(message: String) -> StatusError {
    StatusError::new(StatusReason::ServiceUnavailable, message)
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

impl HttpTransport {
    /// A transport to the server `config` names.
    pub fn new(config: &RemoteConfig) -> Result<HttpTransport, RemoteError> {
        let base = config.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(RemoteError::Url {
                url: config.server.clone(),
                why: "it must start with https:// or http://".to_owned(),
            });
        }
        let tls = match &config.ca_pem {
            Some(ca) => {
                tls::ServingCerts::client_config(ca).map_err(|e| RemoteError::Tls(e.to_string()))?
            }
            None if base.starts_with("https://") => {
                return Err(RemoteError::Tls(
                    "an https server needs the CA of its certificate".to_owned(),
                ));
            }
            None => plain_http_config().map_err(|e| RemoteError::Tls(e.to_string()))?,
        };
        // Without TCP_NODELAY, a request whose headers and body go out in two writes waits for
        // the server's delayed ACK (40 ms on Linux) before its body is sent.
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let token =
            match &config.token {
                Some(token) => Some(HeaderValue::from_str(&format!("Bearer {token}")).map_err(
                    |_| RemoteError::Kubeconfig("the token is not a header value".into()),
                )?),
                None => None,
            };
        Ok(HttpTransport { http, base, token })
    }

    /// The path of a collection or an object (`/apis/apps/v1/namespaces/a/deployments/web`).
    fn path(
        resource: &ApiResource,
        namespace: Option<&str>,
        name: Option<&str>,
        subresource: Option<&str>,
    ) -> String {
        let mut path = if resource.group.is_empty() {
            format!("/api/{}", resource.version)
        } else {
            format!("/apis/{}/{}", resource.group, resource.version)
        };
        if resource.namespaced
            && let Some(namespace) = namespace.filter(|ns| !ns.is_empty())
        {
            path.push_str("/namespaces/");
            path.push_str(&encode(namespace));
        }
        path.push('/');
        path.push_str(&resource.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(&encode(name));
        }
        if let Some(subresource) = subresource {
            path.push('/');
            path.push_str(subresource);
        }
        path
    }

    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, StatusError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("orchestra/", env!("CARGO_PKG_VERSION")));
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, token.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|error| StatusError::internal(format!("cannot build the request: {error}")))
    }

    /// Sends a request and reads the whole answer, or the `Status` error it holds.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Bytes, StatusError> {
        let request = self.request(method, path_and_query, content_type, body)?;
        self.send(request).await
    }

    /// Sends a request and reads the whole answer, or the `Status` error it holds.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Bytes, StatusError> {
        let exchange = async {
            let response =
                self.http.request(request).await.map_err(|error| {
                    unavailable(format!("cannot reach the API server: {error}"))
                })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| {
                    unavailable(format!("the API server's answer broke off: {error}"))
                })?
                .to_bytes();
            Ok::<_, StatusError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                StatusError::new(
                    StatusReason::Timeout,
                    format!("the API server did not answer within {REQUEST_TIMEOUT:?}"),
                )
            })??;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        Ok(body)
    }

    /// Asks the server whether the holder of `token` may do what `review` describes (a
    /// `SelfSubjectAccessReview` sent with that token instead of the transport's own): how a
    /// node agent checks the callers of its endpoints, as kubelet's webhook authorizer does.
    ///
    /// # Errors
    ///
    /// The server's answer: `401` for a token it does not accept, or any failure to reach it.
    pub async fn self_access_review_as(
        &self,
        token: &str,
        review: &k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
    ) -> Result<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview, StatusError> {
        let body = serde_json::to_vec(review)
            .map_err(|error| StatusError::internal(format!("cannot encode the body: {error}")))?;
        let mut request = self.request(
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "application/json",
            Bytes::from(body),
        )?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| StatusError::new(StatusReason::Unauthorized, "Unauthorized"))?;
        request.headers_mut().insert(AUTHORIZATION, bearer);
        decode(self.send(request).await?)
    }

    async fn call_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: &impl serde::Serialize,
    ) -> Result<Bytes, StatusError> {
        let body = serde_json::to_vec(body)
            .map_err(|error| StatusError::internal(format!("cannot encode the body: {error}")))?;
        self.call(
            method,
            path_and_query,
            "application/json",
            Bytes::from(body),
        )
        .await
    }
}

/// The TLS settings of a client of a plain-HTTP server: it never makes a TLS connection, so it
/// trusts no one.
fn plain_http_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// The error an unsuccessful answer stands for: its `Status`, or one made from the code.
fn status_error(code: StatusCode, body: &[u8]) -> StatusError {
    match serde_json::from_slice::<Status>(body) {
        Ok(status) if status.message.is_some() || status.reason.is_some() => {
            let reason = status
                .reason
                .as_deref()
                .and_then(StatusReason::from_name)
                .unwrap_or_else(|| StatusReason::from_code(code.as_u16()));
            StatusError {
                code: code.as_u16(),
                reason,
                message: status.message.unwrap_or_default(),
                details: status.details.map(Box::new),
            }
        }
        _ => StatusError {
            code: code.as_u16(),
            reason: StatusReason::from_code(code.as_u16()),
            message: String::from_utf8_lossy(body).trim().to_owned(),
            details: None,
        },
    }
}

/// An answer's body read as `T` (straight from the bytes).
fn decode<T: serde::de::DeserializeOwned>(body: Bytes) -> Result<T, StatusError> {
    serde_json::from_slice(&body).map_err(|error| {
        StatusError::internal(format!(
            "the API server's answer is not what was asked for: {error}"
        ))
    })
}

/// Appends `key=value` to a query string being built.
fn push(query: &mut Vec<String>, key: &str, value: &str) {
    query.push(format!("{key}={}", encode(value)));
}

fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn write_query(dry_run: bool, field_manager: Option<&str>) -> Vec<String> {
    let mut query = Vec::new();
    if dry_run {
        push(&mut query, "dryRun", "All");
    }
    if let Some(manager) = field_manager {
        push(&mut query, "fieldManager", manager);
    }
    query
}

fn subresource_name(subresource: Subresource) -> Option<&'static str> {
    match subresource {
        Subresource::Main => None,
        Subresource::Status => Some("status"),
    }
}

#[derive(Deserialize)]
struct WireList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<DynamicObject>>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

#[async_trait]
impl Transport for HttpTransport {
    async fn create(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        object: DynamicObject,
        params: &PostParams,
    ) -> Result<DynamicObject, StatusError> {
        let namespace = namespace.or(object.metadata.namespace.as_deref());
        let path = HttpTransport::path(resource, namespace, None, None);
        let query = write_query(params.dry_run, params.field_manager.as_deref());
        decode(
            self.call_json(Method::POST, &with_query(path, &query), &object)
                .await?,
        )
    }

    async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<DynamicObject, StatusError> {
        let path = HttpTransport::path(resource, namespace, Some(name), None);
        decode(
            self.call(Method::GET, &path, "application/json", Bytes::new())
                .await?,
        )
    }

    async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<DynamicObject>, StatusError> {
        let path = HttpTransport::path(resource, namespace, None, None);
        let mut query = Vec::new();
        if let Some(labels) = params.label_selector.as_deref().filter(|s| !s.is_empty()) {
            push(&mut query, "labelSelector", labels);
        }
        if let Some(fields) = params.field_selector.as_deref().filter(|s| !s.is_empty()) {
            push(&mut query, "fieldSelector", fields);
        }
        if let Some(limit) = params.limit {
            push(&mut query, "limit", &limit.to_string());
        }
        if let Some(token) = &params.continue_token {
            push(&mut query, "continue", token);
        }
        if let Some(version) = &params.resource_version {
            push(&mut query, "resourceVersion", version);
        }
        if let Some(version_match) = params.version_match {
            let name = match version_match {
                VersionMatch::NotOlderThan => "NotOlderThan",
                VersionMatch::Exact => "Exact",
            };
            push(&mut query, "resourceVersionMatch", name);
        }
        let list: WireList = decode(
            self.call(
                Method::GET,
                &with_query(path, &query),
                "application/json",
                Bytes::new(),
            )
            .await?,
        )?;
        Ok(ObjectList {
            metadata: list.metadata,
            items: list.items.unwrap_or_default(),
        })
    }

    async fn replace(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: DynamicObject,
        params: &PostParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        let path = HttpTransport::path(
            resource,
            namespace,
            Some(name),
            subresource_name(subresource),
        );
        let query = write_query(params.dry_run, params.field_manager.as_deref());
        decode(
            self.call_json(Method::PUT, &with_query(path, &query), &object)
                .await?,
        )
    }

    async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        params: &PatchParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        let path = HttpTransport::path(
            resource,
            namespace,
            Some(name),
            subresource_name(subresource),
        );
        let mut query = write_query(params.dry_run, params.field_manager.as_deref());
        if params.force {
            push(&mut query, "force", "true");
        }
        let body = serde_json::to_vec(patch)
            .map_err(|error| StatusError::internal(format!("cannot encode the patch: {error}")))?;
        // JSON is YAML, so an apply patch goes as it is.
        decode(
            self.call(
                Method::PATCH,
                &with_query(path, &query),
                params.patch_type.content_type(),
                Bytes::from(body),
            )
            .await?,
        )
    }

    async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deletion<DynamicObject>, StatusError> {
        let path = HttpTransport::path(resource, namespace, Some(name), None);
        let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if params.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        if let Some(grace) = params.grace_period_seconds {
            options["gracePeriodSeconds"] = json!(grace);
        }
        if let Some(preconditions) = &params.preconditions {
            options["preconditions"] = serde_json::to_value(preconditions).unwrap_or_default();
        }
        if let Some(policy) = params.propagation_policy {
            options["propagationPolicy"] = json!(policy.as_str());
        }
        let answer: Value = decode(self.call_json(Method::DELETE, &path, &options).await?)?;
        if answer.get("kind").and_then(Value::as_str) == Some("Status") {
            // Deleted at once: the server answers with a success Status, not the object.
            let mut gone = DynamicObject::new(name, resource);
            gone.metadata.namespace = namespace.map(str::to_owned);
            gone.metadata.uid = answer
                .pointer("/details/uid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            return Ok(Deletion::Deleted(gone));
        }
        let object: DynamicObject = serde_json::from_value(answer).map_err(|error| {
            StatusError::internal(format!("the API server's answer is not an object: {error}"))
        })?;
        if object.metadata.deletion_timestamp.is_some() {
            Ok(Deletion::InProgress(object))
        } else {
            Ok(Deletion::Deleted(object))
        }
    }

    async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent<DynamicObject>>, StatusError> {
        let path = HttpTransport::path(resource, namespace, None, None);
        let mut query = vec!["watch=true".to_owned()];
        if let Some(labels) = params.label_selector.as_deref().filter(|s| !s.is_empty()) {
            push(&mut query, "labelSelector", labels);
        }
        if let Some(fields) = params.field_selector.as_deref().filter(|s| !s.is_empty()) {
            push(&mut query, "fieldSelector", fields);
        }
        if params.bookmarks {
            push(&mut query, "allowWatchBookmarks", "true");
        }
        if let Some(timeout) = params.timeout {
            push(
                &mut query,
                "timeoutSeconds",
                &timeout.as_secs().max(1).to_string(),
            );
        }
        if !resource_version.is_empty() {
            push(&mut query, "resourceVersion", resource_version);
        }
        let request = self.request(
            Method::GET,
            &with_query(path, &query),
            "application/json",
            Bytes::new(),
        )?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| {
                StatusError::new(
                    StatusReason::Timeout,
                    "the API server did not start the watch",
                )
            })?
            .map_err(|error| unavailable(format!("cannot reach the API server: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            return Err(status_error(status, &body));
        }
        let frames = BodyStream::new(response.into_body());
        let events = futures_util::stream::unfold(
            (frames, BytesMut::new(), false),
            |(mut frames, mut buffer, mut done)| async move {
                loop {
                    if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                        let line = buffer.split_to(end + 1);
                        let line = &line[..end];
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        return Some((parse_event(line), (frames, buffer, done)));
                    }
                    if done {
                        if buffer.iter().all(u8::is_ascii_whitespace) {
                            return None;
                        }
                        let rest = buffer.split();
                        return Some((parse_event(&rest), (frames, buffer, done)));
                    }
                    match frames.next().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buffer.extend_from_slice(&data);
                            }
                        }
                        // The connection ended or broke: the watch is over.
                        Some(Err(_)) | None => done = true,
                    }
                }
            },
        );
        Ok(events.boxed())
    }

    async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
    ) -> Result<DynamicObject, StatusError> {
        let pods = ApiResource::new("", "v1", "Pod", Some("pods"), true);
        let path = HttpTransport::path(&pods, Some(namespace), Some(pod), Some("binding"));
        let binding = json!({
            "kind": "Binding",
            "apiVersion": "v1",
            "metadata": {"name": pod, "namespace": namespace},
            "target": {"kind": "Node", "apiVersion": "v1", "name": node},
        });
        self.call_json(Method::POST, &path, &binding).await?;
        Transport::get(self, &pods, Some(namespace), pod).await
    }

    async fn get_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Scale, StatusError> {
        let path = HttpTransport::path(resource, namespace, Some(name), Some("scale"));
        decode(
            self.call(Method::GET, &path, "application/json", Bytes::new())
                .await?,
        )
    }

    async fn replace_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        scale: &Scale,
        params: &PostParams,
    ) -> Result<Scale, StatusError> {
        let path = HttpTransport::path(resource, namespace, Some(name), Some("scale"));
        let query = write_query(params.dry_run, params.field_manager.as_deref());
        decode(
            self.call_json(Method::PUT, &with_query(path, &query), scale)
                .await?,
        )
    }

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, StatusError> {
        let accounts = ApiResource::new("", "v1", "ServiceAccount", Some("serviceaccounts"), true);
        let path = HttpTransport::path(
            &accounts,
            Some(namespace),
            Some(service_account),
            Some("token"),
        );
        let mut body = serde_json::to_value(request).map_err(|error| {
            StatusError::internal(format!("cannot encode the token request: {error}"))
        })?;
        if let Some(fields) = body.as_object_mut() {
            fields.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
            fields.insert("kind".into(), json!("TokenRequest"));
        }
        decode(self.call_json(Method::POST, &path, &body).await?)
    }
}

/// One line of a watch as the event it stands for (a line that is not one ends the watch with
/// an `ERROR` event).
fn parse_event(line: &[u8]) -> WatchEvent<DynamicObject> {
    let broken = |why: String| {
        WatchEvent::Error(Box::new(
            StatusError::internal(format!("the API server sent a bad watch event: {why}"))
                .to_status(),
        ))
    };
    let event: WireEvent = match serde_json::from_slice(line) {
        Ok(event) => event,
        Err(error) => return broken(error.to_string()),
    };
    let object = |value: Value| serde_json::from_value::<DynamicObject>(value);
    match event.kind.as_str() {
        "ADDED" => object(event.object).map_or_else(|e| broken(e.to_string()), WatchEvent::Added),
        "MODIFIED" => {
            object(event.object).map_or_else(|e| broken(e.to_string()), WatchEvent::Modified)
        }
        "DELETED" => {
            object(event.object).map_or_else(|e| broken(e.to_string()), WatchEvent::Deleted)
        }
        "BOOKMARK" => WatchEvent::Bookmark(
            event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        "ERROR" => match serde_json::from_value::<Status>(event.object) {
            Ok(status) => WatchEvent::Error(Box::new(status)),
            Err(error) => broken(error.to_string()),
        },
        other => broken(format!("unknown event type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_kubernetes() {
        let pods = ApiResource::new("", "v1", "Pod", Some("pods"), true);
        let deployments = ApiResource::new("apps", "v1", "Deployment", Some("deployments"), true);
        let nodes = ApiResource::new("", "v1", "Node", Some("nodes"), false);
        assert_eq!(HttpTransport::path(&pods, None, None, None), "/api/v1/pods");
        assert_eq!(
            HttpTransport::path(&pods, Some("a"), Some("web"), Some("binding")),
            "/api/v1/namespaces/a/pods/web/binding"
        );
        assert_eq!(
            HttpTransport::path(&deployments, Some("a"), Some("web"), Some("scale")),
            "/apis/apps/v1/namespaces/a/deployments/web/scale"
        );
        assert_eq!(
            HttpTransport::path(&nodes, Some("ignored"), Some("n1"), None),
            "/api/v1/nodes/n1"
        );
        let accounts = ApiResource::new("", "v1", "ServiceAccount", Some("serviceaccounts"), true);
        assert_eq!(
            HttpTransport::path(&accounts, Some("a"), Some("builder"), Some("token")),
            "/api/v1/namespaces/a/serviceaccounts/builder/token"
        );
    }

    #[test]
    fn watch_lines_become_events() {
        let added = parse_event(br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}"#);
        assert!(
            matches!(&added, WatchEvent::Added(pod) if pod.metadata.name.as_deref() == Some("a"))
        );
        let bookmark = parse_event(br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"9"}}}"#);
        assert_eq!(bookmark, WatchEvent::Bookmark("9".to_owned()));
        let gone = parse_event(br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,"reason":"Expired","message":"too old"}}"#);
        assert!(matches!(&gone, WatchEvent::Error(status) if status.code == Some(410)));
        assert!(matches!(parse_event(b"{not json"), WatchEvent::Error(_)));
    }

    #[test]
    fn failures_keep_their_status() {
        let error = status_error(
            StatusCode::CONFLICT,
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"taken","reason":"AlreadyExists","code":409}"#,
        );
        assert_eq!(error.code, 409);
        assert_eq!(error.reason, StatusReason::AlreadyExists);
        assert_eq!(error.message, "taken");
        let bare = status_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(bare.reason, StatusReason::InternalError);
        assert_eq!(bare.message, "upstream down");
    }
}
