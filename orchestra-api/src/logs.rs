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
