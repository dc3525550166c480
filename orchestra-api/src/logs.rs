//! Pod logs: the seam between the API server and the nodes that hold the logs.
//!
//! In Kubernetes, `GET /api/v1/namespaces/<ns>/pods/<name>/log` reaches the API server, which
//! asks the kubelet of the pod's node for the container's log. [`PodLogs`] is that request: the
//! all-in-one `orchestra up` answers it from its own node agent's runtime
//! ([`RuntimeLogs`]); a control plane whose nodes run elsewhere answers it by asking them.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use jiff::Timestamp;
use orchestra_core::container_runtime::{ContainerFilter, ContainerRuntime, LogOptions};
use orchestra_core::k8s::api::core::v1::Pod;
use orchestra_core::status::{StatusError, StatusReason};

use crate::request::Query;

/// What a log request asks for (Kubernetes' `PodLogOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    /// The container (`container=`); the pod's only container when it has one.
    pub container: Option<String>,
    /// Keep the stream open for new lines (`follow=true`).
    pub follow: bool,
    /// Only the last lines (`tailLines=`).
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time (`sinceSeconds=`, `sinceTime=`).
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 time (`timestamps=true`).
    pub timestamps: bool,
    /// The previous instance of the container (`previous=true`).
    pub previous: bool,
    /// Stop after this many bytes (`limitBytes=`).
    pub limit_bytes: Option<u64>,
}

fn bad_request(message: String) -> StatusError {
    StatusError::new(StatusReason::BadRequest, message)
}

impl LogRequest {
    /// Reads the options of a `pods/log` request's query, relative to `now`.
    pub fn from_query(query: &Query, now: Timestamp) -> Result<LogRequest, StatusError> {
        let tail_lines = match query.integer("tailLines")? {
            Some(n) if n < 0 => {
                return Err(bad_request(format!(
                    "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                )));
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let since = match (query.integer("sinceSeconds")?, query.get("sinceTime")) {
            (Some(_), Some(_)) => {
                return Err(bad_request(
                    "at most one of sinceTime or sinceSeconds may be specified".to_owned(),
                ));
            }
            (Some(seconds), None) if seconds < 1 => {
                return Err(bad_request(format!(
                    "sinceSeconds: Invalid value: {seconds}: must be greater than 0"
                )));
            }
            (Some(seconds), None) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, Some(time)) => Some(time.parse::<Timestamp>().map_err(|error| {
                bad_request(format!("sinceTime: Invalid value: {time:?}: {error}"))
            })?),
            (None, None) => None,
        };
        let limit_bytes = match query.integer("limitBytes")? {
            Some(n) if n < 1 => {
                return Err(bad_request(format!(
                    "limitBytes: Invalid value: {n}: must be greater than 0"
                )));
            }
            other => other.map(i64::unsigned_abs),
        };
        Ok(LogRequest {
            container: query
                .get("container")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            follow: query.flag("follow")?,
            tail_lines,
            since,
            timestamps: query.flag("timestamps")?,
            previous: query.flag("previous")?,
            limit_bytes,
        })
    }
}

/// A stream of log bytes.
pub type LogStream = BoxStream<'static, Result<Bytes, StatusError>>;

/// Where the API server gets pod logs from.
#[async_trait]
pub trait PodLogs: Send + Sync + fmt::Debug + 'static {
    /// The log of `container` of `pod` (the container is already checked to be one of the
    /// pod's).
    async fn logs(
        &self,
        pod: &Pod,
        container: &str,
        request: &LogRequest,
    ) -> Result<LogStream, StatusError>;
}

/// The container the request names, or the pod's only one; otherwise the error Kubernetes gives.
pub fn container_of(pod: &Pod, request: &LogRequest) -> Result<String, StatusError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let containers: Vec<&str> = spec
        .map(|spec| spec.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let init: Vec<&str> = spec
        .and_then(|spec| spec.init_containers.as_ref())
        .map(|list| list.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    match &request.container {
        Some(container)
            if containers.contains(&container.as_str()) || init.contains(&container.as_str()) =>
        {
            Ok(container.clone())
        }
        Some(container) => Err(bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok((*only).to_owned()),
            many => Err(bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.join(" ")
            ))),
        },
    }
}

/// Pod logs read from a node's container runtime (the all-in-one server's own node).
#[derive(Clone, Debug)]
pub struct RuntimeLogs {
    runtime: Arc<dyn ContainerRuntime>,
}

impl RuntimeLogs {
    /// Logs from `runtime`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> RuntimeLogs {
        RuntimeLogs { runtime }
    }
}

#[async_trait]
impl PodLogs for RuntimeLogs {
    async fn logs(
        &self,
        pod: &Pod,
        container: &str,
        request: &LogRequest,
    ) -> Result<LogStream, StatusError> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let filter = ContainerFilter {
            labels: [
                ("io.kubernetes.pod.uid".to_owned(), uid),
                (
                    "io.kubernetes.container.name".to_owned(),
                    container.to_owned(),
                ),
            ]
            .into(),
            ..ContainerFilter::default()
        };
        let mut found = self
            .runtime
            .list_containers(&filter)
            .await
            .map_err(|error| StatusError::internal(error.to_string()))?;
        // Newest attempt first.
        found.sort_by_key(|status| std::cmp::Reverse(status.metadata.attempt));
        let chosen = if request.previous {
            found.get(1)
        } else {
            found.first()
        };
        let Some(chosen) = chosen else {
            let message = if request.previous {
                format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
            } else {
                format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                )
            };
            return Err(bad_request(message));
        };
        let options = LogOptions {
            follow: request.follow,
            tail_lines: request.tail_lines,
            since: request.since,
        };
        let lines = self
            .runtime
            .container_logs(&chosen.id, &options)
            .await
            .map_err(|error| StatusError::internal(error.to_string()))?;
        let timestamps = request.timestamps;
        let mut remaining = request.limit_bytes;
        let stream = lines
            .map(move |line| {
                line.map(|line| {
                    let mut text = Vec::with_capacity(line.content.len() + 40);
                    if timestamps {
                        text.extend_from_slice(
                            format!("{} ", line.time.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")).as_bytes(),
                        );
                    }
                    text.extend_from_slice(&line.content);
                    if !text.ends_with(b"\n") {
                        text.push(b'\n');
                    }
                    Bytes::from(text)
                })
                .map_err(|error| StatusError::internal(error.to_string()))
            })
            .take_while(move |chunk| {
                let keep = match (&mut remaining, chunk) {
                    (Some(0), _) => false,
                    (Some(left), Ok(bytes)) => {
                        *left = left.saturating_sub(bytes.len() as u64);
                        true
                    }
                    _ => true,
                };
                std::future::ready(keep)
            });
        Ok(stream.boxed())
    }
}

/// The path a node agent serves a container's log on (kubelet's).
fn node_log_path(namespace: &str, pod: &str, container: &str) -> String {
    format!("/containerLogs/{namespace}/{pod}/{container}")
}

/// The query string of a log request, as the node's endpoint reads it.
fn log_query(request: &LogRequest) -> String {
    let mut query = Vec::new();
    if request.follow {
        query.push("follow=true".to_owned());
    }
    if let Some(lines) = request.tail_lines {
        query.push(format!("tailLines={lines}"));
    }
    if let Some(since) = request.since {
        query.push(format!(
            "sinceTime={}",
            percent_encoding::utf8_percent_encode(
                &since.to_string(),
                percent_encoding::NON_ALPHANUMERIC
            )
        ));
    }
    if request.timestamps {
        query.push("timestamps=true".to_owned());
    }
    if request.previous {
        query.push("previous=true".to_owned());
    }
    if let Some(limit) = request.limit_bytes {
        query.push(format!("limitBytes={limit}"));
    }
    query.join("&")
}

/// Pod logs fetched from the node that runs the pod, as Kubernetes' API server asks the kubelet:
/// `GET http://<InternalIP>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>` on the
/// node's [`node_log_router`], with the server's own token ([`NodeLogs::with_token`]), which the
/// node checks ([`NodeAccess`]).
#[derive(Clone, Debug)]
pub struct NodeLogs {
    client: orchestra_core::api::Client,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<Bytes>,
    >,
}

impl NodeLogs {
    /// Authenticates to the nodes with this bearer token (the control plane's own identity,
    /// [`KUBELET_CLIENT_USER`], which the default policy allows `nodes/proxy`).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> NodeLogs {
        self.token = Some(token.into());
        self
    }

    /// Logs from the nodes `client` knows.
    pub fn new(client: orchestra_core::api::Client) -> NodeLogs {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        NodeLogs {
            client,
            token: None,
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector),
        }
    }
}

#[async_trait]
impl PodLogs for NodeLogs {
    async fn logs(
        &self,
        pod: &Pod,
        container: &str,
        request: &LogRequest,
    ) -> Result<LogStream, StatusError> {
        use http_body_util::BodyExt as _;
        use orchestra_core::api::Api;
        use orchestra_core::k8s::api::core::v1::Node;

        let node_name = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default();
        let node = Api::<Node>::all(self.client.clone())
            .get(&node_name)
            .await?;
        let status = node.status.unwrap_or_default();
        let address = status
            .addresses
            .unwrap_or_default()
            .into_iter()
            .find(|address| address.type_ == "InternalIP")
            .map(|address| address.address);
        let port = status
            .daemon_endpoints
            .and_then(|endpoints| endpoints.kubelet_endpoint)
            .map(|endpoint| endpoint.port);
        let (Some(address), Some(port)) = (address, port) else {
            return Err(StatusError::new(
                StatusReason::ServiceUnavailable,
                format!("node {node_name} publishes no address to read logs from"),
            ));
        };
        let host = if address.contains(':') {
            format!("[{address}]")
        } else {
            address
        };
        let path = node_log_path(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            container,
        );
        let uri = format!("http://{host}:{port}{path}?{}", log_query(request));
        let mut http_request = http::Request::get(&uri);
        if let Some(token) = &self.token {
            http_request =
                http_request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let http_request = http_request
            .body(http_body_util::Empty::new())
            .map_err(|error| StatusError::internal(error.to_string()))?;
        let response = self.http.request(http_request).await.map_err(|error| {
            StatusError::new(
                StatusReason::ServiceUnavailable,
                format!("cannot reach node {node_name} for logs: {error}"),
            )
        })?;
        if !response.status().is_success() {
            let code = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            return Err(StatusError {
                code,
                reason: StatusReason::from_code(code),
                message: String::from_utf8_lossy(&body).trim().to_owned(),
                details: None,
            });
        }
        let body = http_body_util::BodyStream::new(response.into_body());
        Ok(body
            .filter_map(|frame| async move {
                match frame {
                    Ok(frame) => frame.into_data().ok().map(Ok),
                    Err(error) => Some(Err(StatusError::new(
                        StatusReason::ServiceUnavailable,
                        format!("the node's log stream broke: {error}"),
                    ))),
                }
            })
            .boxed())
    }
}

/// The user the control plane reads nodes' logs as (Kubernetes' `kube-apiserver-kubelet-client`),
/// bound by the default policy to `system:kubelet-api-admin`.
pub const KUBELET_CLIENT_USER: &str = orchestra_core::rbac::KUBELET_CLIENT_USER;

/// What the API server said of each token (by digest): when, and the answer's code.
type AccessCache = std::collections::HashMap<[u8; 32], (std::time::Instant, u16)>;

/// How long a node remembers what the API server said of a caller's token.
const ACCESS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Who may read a node's logs, decided as kubelet's webhook authentication and authorization
/// do: the caller's bearer token is sent back to the API server in a `SelfSubjectAccessReview`
/// asking for `get` on `nodes/proxy` of this node; the answer (allowed, refused, or the token
/// rejected) is cached for a minute by the token's digest.
#[derive(Clone)]
pub struct NodeAccess {
    transport: crate::remote::HttpTransport,
    node: String,
    cache: Arc<std::sync::Mutex<AccessCache>>,
}

impl std::fmt::Debug for NodeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAccess")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeAccess {
    /// Callers checked with the API server `transport` reaches, for node `node`.
    pub fn new(transport: crate::remote::HttpTransport, node: impl Into<String>) -> NodeAccess {
        NodeAccess {
            transport,
            node: node.into(),
            cache: Arc::default(),
        }
    }

    /// `Ok` when the request's token may read this node's logs; otherwise the `401` or `403` to
    /// answer.
    async fn check(&self, headers: &http::HeaderMap) -> Result<(), StatusError> {
        use sha2::Digest as _;
        let unauthorized = || StatusError::new(StatusReason::Unauthorized, "Unauthorized");
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(unauthorized)?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .filter(|(at, _)| at.elapsed() < ACCESS_CACHE_TTL)
            .map(|(_, code)| *code);
        let code = match cached {
            Some(code) => code,
            None => {
                let code = self.ask(token).await?;
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(digest, (std::time::Instant::now(), code));
                code
            }
        };
        match code {
            200 => Ok(()),
            401 => Err(unauthorized()),
            _ => Err(StatusError::new(
                StatusReason::Forbidden,
                format!(
                    "nodes \"{}\" is forbidden: the caller cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope",
                    self.node
                ),
            )),
        }
    }

    /// What the API server says of `token`: 200 allowed, 403 refused, 401 not a good token.
    async fn ask(&self, token: &str) -> Result<u16, StatusError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("get".to_owned()),
                    resource: Some("nodes".to_owned()),
                    subresource: Some("proxy".to_owned()),
                    name: Some(self.node.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match self.transport.self_access_review_as(token, &review).await {
            Ok(answer) => Ok(if answer.status.is_some_and(|s| s.allowed) {
                200
            } else {
                403
            }),
            Err(error) if error.code == 401 => Ok(401),
            // A token that may not even ask is a token that may not read.
            Err(error) if error.code == 403 => Ok(403),
            Err(error) => Err(error),
        }
    }
}

/// The routes a node agent serves its pods' logs on (kubelet's `/containerLogs/...`), for a
/// control plane's [`NodeLogs`]: the pod is read through `client` and its log from `logs`; with
/// `access`, only callers the API server allows `nodes/proxy` on the node are served (`401` or
/// `403` `Status` otherwise).
pub fn node_log_router(
    client: orchestra_core::api::Client,
    logs: Arc<dyn PodLogs>,
    access: Option<NodeAccess>,
) -> axum::Router {
    use axum::extract::{Path, RawQuery, State};
    use axum::response::IntoResponse as _;
    use orchestra_core::api::Api;

    type NodeState = (
        orchestra_core::api::Client,
        Arc<dyn PodLogs>,
        Option<NodeAccess>,
    );

    async fn serve(
        State((client, logs, access)): State<NodeState>,
        Path((namespace, pod, container)): Path<(String, String, String)>,
        RawQuery(query): RawQuery,
        headers: http::HeaderMap,
    ) -> axum::response::Response {
        let outcome = async {
            if let Some(access) = &access {
                access.check(&headers).await?;
            }
            let query = Query::parse(query.as_deref());
            let request = LogRequest::from_query(&query, client.clock().now())?;
            let pod = Api::<Pod>::namespaced(client.clone(), &namespace)
                .get(&pod)
                .await?;
            let request = LogRequest {
                container: Some(container.clone()),
                ..request
            };
            let container = container_of(&pod, &request)?;
            let stream = logs.logs(&pod, &container, &request).await?;
            let body = axum::body::Body::from_stream(
                stream.map(|chunk| chunk.map_err(|error| std::io::Error::other(error.message))),
            );
            Ok::<_, StatusError>(body.into_response())
        };
        match outcome.await {
            Ok(response) => response,
            Err(error) => crate::response::failure(&error),
        }
    }

    axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(serve),
        )
        .with_state((client, logs, access))
}
