//! Probes: kubelet's liveness, readiness and startup checks of a running container.
//!
//! A container may declare three probes. The **startup** probe says when the application has
//! started: until it has succeeded the other two do not run, and if it fails `failureThreshold`
//! times in a row the container is killed and restarted. The **liveness** probe says whether the
//! application still works: failing `failureThreshold` times in a row gets the container killed
//! (with the pod's `terminationGracePeriodSeconds`, or the probe's own when it sets one), and the
//! pod's `restartPolicy` then restarts it through the usual crash-loop back-off. The **readiness**
//! probe says whether the container should receive traffic: the container is not ready until it
//! first succeeds, flips to not ready after `failureThreshold` failures and back after
//! `successThreshold` successes, and is never killed for it.
//!
//! # Running one probe
//!
//! [`run_probe`] runs a probe's action once against a container, within its `timeoutSeconds`:
//!
//! - `exec` ([`exec_probe`]): the command through
//!   [`ContainerRuntime::exec_sync`]; exit code 0 is a success;
//! - `tcpSocket` ([`tcp_probe`]): a TCP connection to the host (the pod's IP by default) and
//!   port; connecting is a success;
//! - `httpGet` ([`HttpProbe`]): an HTTP/1.1 `GET` written by hand over a TCP connection, with
//!   kubelet's headers (`User-Agent: kube-probe/1.33`, `Accept: */*`, `Connection: close`, the
//!   probe's `httpHeaders` overriding them); a status from 200 to 399 is a success. At most
//!   10 KiB of the body is read. Redirects to the same host are followed (at most 10 requests in
//!   all); a redirect to another host is not, and counts as a success with a warning, as kubelet
//!   does. `scheme: HTTPS` is a failure: this agent speaks no TLS;
//! - `grpc`: a failure, not supported by this agent.
//!
//! Its [`ProbeOutcome`] is a [`ProbeResult`] with a message for people (kubelet puts it in the
//! `Unhealthy` event). A probe that could not be run at all — a named port the container does not
//! declare, an exec the runtime could not start — is a [`ProbeError`]: kubelet throws such a run
//! away, counting it neither as a success nor as a failure, and so does [`ProbeWorker`].
//!
//! # The state machine
//!
//! [`ProbeWorker`] is one probe of one container (kubelet's prober `worker`): what it currently
//! says ([`ProbeStatus`]: a readiness probe starts as [`Failure`](ProbeStatus::Failure), a
//! liveness probe as [`Success`](ProbeStatus::Success), a startup probe as
//! [`Unknown`](ProbeStatus::Unknown)), the run of equal results that moves it across the
//! thresholds, when it runs next (`initialDelaySeconds` counted from the container's `startedAt`,
//! then every `periodSeconds`), and the run in flight. [`ContainerProbes`] holds a container's
//! three and what ties them: the startup probe gates the others, a liveness or startup failure
//! kills the container, and everything starts again when a new instance (a new container id)
//! runs. [`PodWorker`](super::pod_worker::PodWorker) keeps one per container and steps it on
//! every sync of a running container.
//!
//! # Why probe runs are tasks that the worker holds
//!
//! The agent syncs the node's pods one after the other in a single loop. Running the due probes
//! inside a sync, even all of them at once, would hold that loop for up to the longest
//! `timeoutSeconds` of every pod in turn (a hanging endpoint with a 30 s timeout would stall the
//! node for 30 s each period), and a liveness kill for up to the grace period. So a sync never
//! waits for a probe: [`ContainerProbes::step`] collects the results of the runs that finished
//! since the last sync, applies them, starts the runs that are due as tokio tasks, and returns.
//! The kill after a liveness or startup failure is a task in the same way. Each task's handle is
//! held by its [`ProbeWorker`] (or [`ContainerProbes`]), which aborts it when dropped — when the
//! pod is forgotten — or when a new container instance starts, so no task outlives what it
//! probes. The price is latency: a result is applied at the sync after its run ended, which the
//! agent's resync (every second, like kubelet's relist) bounds. Runs keep a fixed cadence of one
//! per period; to keep a 1 s probe running every second despite the jitter between syncs that
//! come once a second, a run is due up to a tenth of its period (at most 100 ms) early.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::container_runtime::fake::FakeRuntime;
//! use orchestra_core::container_runtime::{ContainerRuntime, ExecResult, RuntimeError};
//! use orchestra_core::node_agent::probe::{ProbeResult, ProbeTarget, run_probe};
//! use orchestra_core::k8s::api::core::v1::Probe;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let runtime = FakeRuntime::new();
//! runtime.set_exec(|_, command| {
//!     let healthy = command.last().map(String::as_str) == Some("/healthy");
//!     Ok(ExecResult { exit_code: if healthy { 0 } else { 1 }, ..ExecResult::default() })
//! });
//! # use orchestra_core::container_runtime::{ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata};
//! # let pod = PodSandboxConfig {
//! #     metadata: PodSandboxMetadata { name: "web".into(), namespace: "default".into(), uid: "u1".into(), attempt: 0 },
//! #     ..Default::default()
//! # };
//! # let sandbox = runtime.run_pod_sandbox(&pod).await?;
//! # let config = ContainerConfig {
//! #     metadata: ContainerMetadata { name: "app".into(), attempt: 0 },
//! #     image: "hello:1".into(),
//! #     ..Default::default()
//! # };
//! # let id = runtime.create_container(&sandbox, &config, &pod).await?;
//! # runtime.start_container(&id).await?;
//! // A running container `id` whose exec of `cat /healthy` exits with 0.
//! let probe: Probe = serde_json::from_value(serde_json::json!({
//!     "exec": {"command": ["cat", "/healthy"]},
//! }))
//! .unwrap();
//! let target = ProbeTarget { container_id: id, ..ProbeTarget::default() };
//! let outcome = run_probe(&runtime, &probe, &target).await.unwrap();
//! assert_eq!(outcome.result, ProbeResult::Success);
//! # Ok::<(), RuntimeError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::pod_worker::ContainerEvent;
use crate::container_runtime::{ContainerRuntime, RuntimeError};
use crate::runtime::events::EventType;

/// The `User-Agent` of HTTP probes (kubelet's `kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";

/// The most of a response body an HTTP probe reads (kubelet's `maxRespBodyLength`).
pub const MAX_BODY_BYTES: usize = 10 * 1024;

/// The most requests an HTTP probe makes, the first and the redirects it follows.
pub const MAX_REDIRECTS: usize = 10;

/// The shortest grace period a probe kill gives a container (kubelet's
/// `minimumGracePeriodInSeconds`).
pub const MIN_KILL_GRACE: Duration = Duration::from_secs(2);

/// The most of a response's status line and headers an HTTP probe reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How early a probe may run: a tenth of its period, at most this.
const MAX_EARLY: Duration = Duration::from_millis(100);

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: failing gets the container killed and restarted.
    Liveness,
    /// `readinessProbe`: failing makes the container not ready.
    Readiness,
    /// `startupProbe`: the others wait for its success; failing gets the container killed.
    Startup,
}

impl ProbeKind {
    /// Kubelet's name for it in events (`Liveness`, `Readiness`, `Startup`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one probe run found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// It passed.
    Success,
    /// It passed, with something worth telling (an HTTP redirect to another host, not followed).
    Warning,
    /// It failed.
    Failure,
}

impl ProbeResult {
    /// Whether it counts as a success ([`Success`](ProbeResult::Success) or
    /// [`Warning`](ProbeResult::Warning)).
    pub fn passed(self) -> bool {
        !matches!(self, ProbeResult::Failure)
    }
}

/// The outcome of one probe run: the result, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Passed or not.
    pub result: ProbeResult,
    /// What it found: the command's output, the HTTP response body, or why it failed
    /// (`HTTP probe failed with statuscode: 500`).
    pub message: String,
}

impl ProbeOutcome {
    fn new(result: ProbeResult, message: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome {
            result,
            message: message.into(),
        }
    }

    fn success(message: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome::new(ProbeResult::Success, message)
    }

    fn failure(message: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome::new(ProbeResult::Failure, message)
    }
}

/// Why a probe could not be run at all (the run counts neither way).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The probe names no action (`exec`, `httpGet`, `tcpSocket` or `grpc`).
    #[error("missing probe handler")]
    NoAction,
    /// Its port is not one the container declares, or not a port number.
    #[error("port {port}: {reason}")]
    Port {
        /// The port as the probe names it.
        port: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime could not run the exec (the container does not run, ...).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The task running the probe ended without a result (aborted or panicked).
    #[error("probe task: {0}")]
    Task(String),
}

/// A probe's timing and thresholds, with Kubernetes' defaults where the spec leaves them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// How long after the container started the first run waits (`initialDelaySeconds`, 0).
    pub initial_delay: Duration,
    /// Between runs (`periodSeconds`, 10 s).
    pub period: Duration,
    /// How long a run may take (`timeoutSeconds`, 1 s).
    pub timeout: Duration,
    /// Successes in a row that make a failing probe pass (`successThreshold`, 1).
    pub success_threshold: u32,
    /// Failures in a row that make a passing probe fail (`failureThreshold`, 3).
    pub failure_threshold: u32,
}

impl ProbeTiming {
    /// The timing of `probe` (values below the minimum are taken as the default).
    pub fn of(probe: &Probe) -> ProbeTiming {
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(
                value
                    .and_then(|v| u64::try_from(v).ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default),
            )
        };
        let count = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        ProbeTiming {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The container a probe runs against.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeTarget {
    /// The runtime's id of the running instance (for `exec`).
    pub container_id: String,
    /// The pod's primary address: where `httpGet` and `tcpSocket` connect unless they name a
    /// host (`127.0.0.1` when the pod has none, as for a pod on the host's network).
    pub pod_ip: Option<IpAddr>,
    /// The container's declared ports, by which named ports are resolved.
    pub ports: Vec<ContainerPort>,
}

impl ProbeTarget {
    /// The host a probe connects to when it names none.
    fn default_host(&self) -> String {
        self.pod_ip
            .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string())
    }
}

/// The port number `port` names: a number, or the name of one of `ports` (kubelet's
/// `ResolveContainerPort`).
///
/// # Errors
///
/// [`ProbeError::Port`] when no declared port has the name, or the number is no TCP port.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            if let Ok(number) = name.parse::<i32>() {
                number
            } else {
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
                    .ok_or_else(|| ProbeError::Port {
                        port: name.clone(),
                        reason: "the container declares no port of that name".to_owned(),
                    })?
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ProbeError::Port {
            port: number.to_string(),
            reason: "not a port number".to_owned(),
        })
}

/// Runs `probe`'s action once against `target`, within the probe's `timeoutSeconds` (see the
/// [module](self)).
///
/// # Errors
///
/// A [`ProbeError`] when the probe could not be run at all; a probe that ran and failed is an
/// `Ok` [`ProbeOutcome`] with [`ProbeResult::Failure`].
pub async fn run_probe(
    runtime: &dyn ContainerRuntime,
    probe: &Probe,
    target: &ProbeTarget,
) -> Result<ProbeOutcome, ProbeError> {
    let timeout = ProbeTiming::of(probe).timeout;
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return exec_probe(runtime, &target.container_id, &command, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        return Ok(HttpProbe::new(action, target)?.run(timeout).await);
    }
    if let Some(action) = &probe.tcp_socket {
        let port = resolve_port(&action.port, &target.ports)?;
        let host = action
            .host
            .clone()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| target.default_host());
        return Ok(tcp_probe(&host, port, timeout).await);
    }
    if probe.grpc.is_some() {
        return Ok(ProbeOutcome::failure(
            "gRPC probes are not supported by this agent",
        ));
    }
    Err(ProbeError::NoAction)
}

/// Runs `command` in the container `container_id` (an `exec` probe): a success when it exits
/// with 0, a failure with its output otherwise, or when it runs longer than `timeout`.
///
/// The runtime is asked to stop the command after `timeout`; a runtime that does not is cut off
/// a second later.
///
/// # Errors
///
/// [`ProbeError::Runtime`] when the runtime cannot run the command (the container does not run,
/// the command is empty).
pub async fn exec_probe(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let timed_out = || ProbeOutcome::failure(format!("command {:?} timed out", command.join(" ")));
    let guard = timeout.saturating_add(Duration::from_secs(1));
    match tokio::time::timeout(guard, runtime.exec_sync(container_id, command, timeout)).await {
        Err(_) | Ok(Err(RuntimeError::Timeout { .. })) => Ok(timed_out()),
        Ok(Err(error)) => Err(error.into()),
        Ok(Ok(result)) => {
            let mut output = String::from_utf8_lossy(&result.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&result.stderr));
            if result.exit_code == 0 {
                Ok(ProbeOutcome::success(output))
            } else {
                if output.is_empty() {
                    output = format!(
                        "command {:?} exited with {}",
                        command.join(" "),
                        result.exit_code
                    );
                }
                Ok(ProbeOutcome::failure(output))
            }
        }
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` (a `tcpSocket` probe): a success when the connection is made within
/// `timeout`; it is closed at once.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let address = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => ProbeOutcome::success(""),
        Ok(Err(error)) => ProbeOutcome::failure(format!("dial tcp {address}: {error}")),
        Err(_) => ProbeOutcome::failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// An absolute `http` URL, split as requests need it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Url {
    /// `http` or `https` (lower case).
    scheme: String,
    /// The host, without brackets.
    host: String,
    /// The port (the scheme's default when the URL has none).
    port: u16,
    /// The host and port as the URL writes them (the `Host` header).
    authority: String,
    /// The path and query, starting with `/`.
    target: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.target)
    }
}

/// The path with its `.` and `..` segments resolved (RFC 3986's `remove_dot_segments`), the
/// query kept.
fn normalize_target(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        match *part {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            other => segments.push(other),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    if let Some(query) = query {
        normalized.push('?');
        normalized.push_str(query);
    }
    normalized
}

impl Url {
    /// The URL `scheme://authority<rest>`, where `rest` is what follows the authority.
    fn parse_after_scheme(scheme: &str, rest: &str) -> Option<Url> {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) if !port.is_empty() => port.parse().ok()?,
                Some(_) => default_port,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, "")) => (host, default_port),
                Some((host, port)) => (host, port.parse().ok()?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return None;
        }
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else if target.is_empty() {
            "/".to_owned()
        } else {
            target.to_owned()
        };
        Some(Url {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            target: normalize_target(&target),
        })
    }

    /// Where a `Location` header sends a request for this URL.
    fn join(&self, location: &str) -> Option<Url> {
        let location = location.trim();
        let location = location.split_once('#').map_or(location, |(l, _)| l);
        let scheme_end = location.find("://");
        let first_delimiter = location.find(['/', '?']);
        if let Some(end) = scheme_end
            && first_delimiter.is_none_or(|d| end < d)
        {
            let scheme = location[..end].to_ascii_lowercase();
            return Url::parse_after_scheme(&scheme, &location[end + 3..]);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse_after_scheme(&self.scheme, rest);
        }
        let path = self
            .target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p);
        let target = if location.starts_with('/') {
            location.to_owned()
        } else if location.is_empty() {
            self.target.clone()
        } else if location.starts_with('?') {
            format!("{path}{location}")
        } else {
            let directory = path.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{directory}/{location}")
        };
        Some(Url {
            target: normalize_target(&target),
            ..self.clone()
        })
    }
}

/// A response as an HTTP probe needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    location: Option<String>,
    body: String,
}

/// A response's status line and headers.
#[derive(Clone, Debug, Default)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    location: Option<String>,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|line| line.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or_default();
    let malformed = || format!("malformed HTTP response {status_line:?}");
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(malformed());
    }
    let status = words
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(malformed)?;
    let mut parsed = Head {
        status,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                parsed.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                );
            }
            "transfer-encoding" => {
                parsed.chunked = value.to_ascii_lowercase().contains("chunked");
            }
            "location" => parsed.location = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(parsed)
}

/// A buffered reader over a response.
struct Reader<R> {
    inner: R,
    buffer: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads more into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 4096];
        let read = self
            .inner
            .read(&mut chunk)
            .await
            .map_err(|error| error.to_string())?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read > 0)
    }

    /// The bytes before `delimiter` (which is consumed), at most `limit` of them.
    async fn read_until(&mut self, delimiter: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.buffer[searched..]
                .windows(delimiter.len())
                .position(|window| window == delimiter)
            {
                let at = searched + at;
                let line = self.buffer[..at].to_vec();
                self.buffer.drain(..at + delimiter.len());
                return Ok(line);
            }
            if self.buffer.len() > limit {
                return Err(format!("response header longer than {limit} bytes"));
            }
            searched = self.buffer.len().saturating_sub(delimiter.len() - 1);
            if !self.fill().await? {
                return Err("unexpected EOF".to_owned());
            }
        }
    }

    /// Up to `count` bytes; fewer only at the end of the stream.
    async fn read_up_to(&mut self, count: usize) -> Result<Vec<u8>, String> {
        while self.buffer.len() < count {
            if !self.fill().await? {
                break;
            }
        }
        let take = count.min(self.buffer.len());
        Ok(self.buffer.drain(..take).collect())
    }

    /// The body of a response with `head`, at most [`MAX_BODY_BYTES`] of it.
    async fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, String> {
        if matches!(head.status, 100..=199 | 204 | 304) {
            return Ok(Vec::new());
        }
        if head.chunked {
            let mut body = Vec::new();
            while body.len() < MAX_BODY_BYTES {
                let line = self.read_until(b"\r\n", 1024).await?;
                let line = String::from_utf8_lossy(&line);
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    break;
                }
                let wanted = size.min(MAX_BODY_BYTES - body.len());
                let chunk = self.read_up_to(wanted).await?;
                if chunk.len() < wanted {
                    return Err("unexpected EOF".to_owned());
                }
                body.extend_from_slice(&chunk);
                if wanted == size {
                    self.read_until(b"\r\n", 2).await?;
                }
            }
            return Ok(body);
        }
        let wanted = head
            .content_length
            .map_or(MAX_BODY_BYTES, |length| length.min(MAX_BODY_BYTES));
        let body = self.read_up_to(wanted).await?;
        if head.content_length.is_some() && body.len() < wanted {
            return Err("unexpected EOF".to_owned());
        }
        Ok(body)
    }
}

/// Reads a response (skipping interim `1xx` ones) from `stream`.
async fn read_response<R: AsyncRead + Unpin>(stream: R) -> Result<Response, String> {
    let mut reader = Reader {
        inner: stream,
        buffer: Vec::new(),
    };
    loop {
        let head = reader.read_until(b"\r\n\r\n", MAX_HEAD_BYTES).await?;
        let head = parse_head(&head)?;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let body = reader.read_body(&head).await?;
        return Ok(Response {
            status: head.status,
            location: head.location,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
}

/// The request target as sent: bytes that cannot appear in a request line (spaces, controls,
/// non-ASCII) percent-encoded, the rest (`%XX` escapes included) as they are.
fn escape_target(target: &str) -> String {
    let mut escaped = String::with_capacity(target.len());
    for byte in target.bytes() {
        if byte.is_ascii_graphic() {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// Whether a header name or value would break the request.
fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// An `httpGet` probe's request, resolved against its container (kubelet's
/// `NewRequestForHTTPGetAction`).
///
/// # Examples
///
/// ```
/// use orchestra_core::node_agent::probe::{HttpProbe, ProbeTarget};
/// use orchestra_core::k8s::api::core::v1::HTTPGetAction;
///
/// let action: HTTPGetAction = serde_json::from_value(serde_json::json!({
///     "path": "/healthz", "port": "http",
///     "httpHeaders": [{"name": "X-Probe", "value": "liveness"}],
/// }))
/// .unwrap();
/// let target = ProbeTarget {
///     pod_ip: Some("10.1.0.7".parse().unwrap()),
///     ports: vec![serde_json::from_value(serde_json::json!({"name": "http", "containerPort": 8080}))
///         .unwrap()],
///     ..ProbeTarget::default()
/// };
/// let probe = HttpProbe::new(&action, &target).unwrap();
/// assert_eq!(probe.url(), "http://10.1.0.7:8080/healthz");
/// assert_eq!(
///     probe.request_head().unwrap(),
///     "GET /healthz HTTP/1.1\r\nHost: 10.1.0.7:8080\r\nUser-Agent: kube-probe/1.33\r\n\
///      Accept: */*\r\nConnection: close\r\nX-Probe: liveness\r\n\r\n"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    /// `http` or `https` (lower case; `https` fails: no TLS here).
    pub scheme: String,
    /// The host connected to: the action's, else the pod's IP.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path and query requested (`/` by default).
    pub path: String,
    /// The action's `httpHeaders`, in order.
    pub headers: Vec<(String, String)>,
}

impl HttpProbe {
    /// The request `action` makes of the container `target`.
    ///
    /// # Errors
    ///
    /// [`ProbeError::Port`] when its port cannot be resolved.
    pub fn new(action: &HTTPGetAction, target: &ProbeTarget) -> Result<HttpProbe, ProbeError> {
        let port = resolve_port(&action.port, &target.ports)?;
        let host = action
            .host
            .clone()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| target.default_host());
        let path = action.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(HttpProbe {
            scheme: action
                .scheme
                .as_deref()
                .unwrap_or("HTTP")
                .to_ascii_lowercase(),
            host,
            port,
            path,
            headers: action
                .http_headers
                .iter()
                .flatten()
                .map(|header| (header.name.clone(), header.value.clone()))
                .collect(),
        })
    }

    /// The first URL requested.
    fn first_url(&self) -> Url {
        let authority = join_host_port(&self.host, self.port);
        Url {
            scheme: self.scheme.clone(),
            host: self.host.clone(),
            port: self.port,
            authority,
            target: self.path.clone(),
        }
    }

    /// The URL it requests (`http://10.1.0.7:8080/healthz`).
    pub fn url(&self) -> String {
        self.first_url().to_string()
    }

    /// The probe's header `name`, if it sets one.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The request's head for `url`, with `host` as its `Host` header.
    fn head_for(&self, url: &Url, host: &str) -> Result<String, String> {
        let target = escape_target(&url.target);
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in [
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ] {
            if self.header(name).is_none() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for (name, value) in &self.headers {
            if !valid_header(name, value) {
                return Err(format!("invalid header field {name:?}"));
            }
            let defaulted = ["User-Agent", "Accept"]
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name));
            if name.eq_ignore_ascii_case("Host") || (defaulted && value.is_empty()) {
                // The Host header is the request's host; an empty User-Agent or Accept removes it.
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        Ok(head)
    }

    /// The head of the first request: the request line, `Host`, kubelet's default headers, and
    /// the probe's (which replace the defaults of the same name).
    ///
    /// # Errors
    ///
    /// A message when a header's name or value cannot be sent (a line break in it).
    pub fn request_head(&self) -> Result<String, String> {
        let url = self.first_url();
        let host = self
            .header("Host")
            .filter(|h| !h.is_empty())
            .unwrap_or(&url.authority)
            .to_owned();
        self.head_for(&url, &host)
    }

    /// One request to `url`.
    async fn get(&self, url: &Url, host: &str) -> Result<Response, String> {
        let head = self.head_for(url, host)?;
        let address = join_host_port(&url.host, url.port);
        let mut stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|error| format!("dial tcp {address}: {error}"))?;
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|error| format!("write tcp {address}: {error}"))?;
        read_response(stream).await
    }

    /// The requests, following redirects to the same host; `current` is the URL being requested.
    async fn follow(&self, current: &mut Url) -> ProbeOutcome {
        let original_host = current.host.to_ascii_lowercase();
        let custom_host = self.header("Host").filter(|h| !h.is_empty());
        let mut host = custom_host.map_or_else(|| current.authority.clone(), str::to_owned);
        let mut requests = 0;
        loop {
            if current.scheme == "https" {
                return ProbeOutcome::failure(format!(
                    "Get {:?}: HTTPS probes are not supported by this agent",
                    current.to_string()
                ));
            }
            if current.scheme != "http" {
                return ProbeOutcome::failure(format!(
                    "Get {:?}: unsupported protocol scheme {:?}",
                    current.to_string(),
                    current.scheme
                ));
            }
            requests += 1;
            let response = match self.get(current, &host).await {
                Ok(response) => response,
                Err(error) => {
                    return ProbeOutcome::failure(format!(
                        "Get {:?}: {error}",
                        current.to_string()
                    ));
                }
            };
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            if redirect && let Some(location) = &response.location {
                let Some(next) = current.join(location) else {
                    return ProbeOutcome::failure(format!(
                        "Get {:?}: failed to parse Location header {location:?}",
                        current.to_string()
                    ));
                };
                if next.host.to_ascii_lowercase() == original_host {
                    if requests >= MAX_REDIRECTS {
                        return ProbeOutcome::failure(format!(
                            "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                            next.to_string()
                        ));
                    }
                    // A custom Host header goes along to a relative location only (as Go does).
                    let relative = !location.contains("://") && !location.starts_with("//");
                    host = match custom_host {
                        Some(custom) if relative => custom.to_owned(),
                        _ => next.authority.clone(),
                    };
                    *current = next;
                    continue;
                }
                // Another host: not followed, the redirect itself is the answer.
            }
            return match response.status {
                200..=299 => ProbeOutcome::success(response.body),
                300..=399 => ProbeOutcome::new(
                    ProbeResult::Warning,
                    format!(
                        "Probe terminated redirects, Response body: {}",
                        response.body
                    ),
                ),
                status => {
                    ProbeOutcome::failure(format!("HTTP probe failed with statuscode: {status}"))
                }
            };
        }
    }

    /// Makes the request (and follows its redirects) within `timeout`: a success for a status
    /// from 200 to 399 (a warning for a redirect to another host, not followed), a failure
    /// otherwise, for an error, or after `timeout`.
    pub async fn run(&self, timeout: Duration) -> ProbeOutcome {
        let mut current = self.first_url();
        match tokio::time::timeout(timeout, self.follow(&mut current)).await {
            Ok(outcome) => outcome,
            Err(_) => ProbeOutcome::failure(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting \
                 headers)",
                current.to_string()
            )),
        }
    }
}

/// What a probe currently says of its container (kubelet's probe results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeStatus {
    /// Nothing yet (a startup probe before its first verdict).
    Unknown,
    /// Passing.
    Success,
    /// Failing.
    Failure,
}

/// A task the probe state owns: aborted when dropped.
#[derive(Debug)]
struct Task<T>(JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    fn spawn(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
        Task(tokio::spawn(future))
    }
}

impl<T> Task<T> {
    /// Takes the task's output out of `slot` if it has finished (the slot is then empty).
    fn take_finished(slot: &mut Option<Task<T>>) -> Option<Result<T, String>> {
        let task = slot.as_mut()?;
        if !task.0.is_finished() {
            return None;
        }
        // Finished: polling once yields the output (unless tokio's cooperative budget is spent,
        // in which case the next sync takes it).
        let output = (&mut task.0).now_or_never()?;
        *slot = None;
        Some(output.map_err(|error| error.to_string()))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One probe of one container (kubelet's prober `worker`; see the [module](self)).
#[derive(Debug)]
pub struct ProbeWorker {
    kind: ProbeKind,
    probe: Arc<Probe>,
    timing: ProbeTiming,
    status: ProbeStatus,
    /// Whether the last counted run passed, and how many in a row did the same.
    last: Option<bool>,
    run: u32,
    /// After a liveness or startup failure: no more runs until a new container instance.
    on_hold: bool,
    next_run: Option<Instant>,
    running: Option<Task<Result<ProbeOutcome, ProbeError>>>,
}

impl ProbeWorker {
    /// A worker for `probe` of kind `kind`, before any run.
    pub fn new(kind: ProbeKind, probe: &Probe) -> ProbeWorker {
        ProbeWorker {
            kind,
            probe: Arc::new(probe.clone()),
            timing: ProbeTiming::of(probe),
            status: ProbeWorker::initial(kind),
            last: None,
            run: 0,
            on_hold: false,
            next_run: None,
            running: None,
        }
    }

    /// What a probe of kind `kind` says before its first verdict: readiness fails, liveness
    /// passes, startup does not know.
    fn initial(kind: ProbeKind) -> ProbeStatus {
        match kind {
            ProbeKind::Readiness => ProbeStatus::Failure,
            ProbeKind::Liveness => ProbeStatus::Success,
            ProbeKind::Startup => ProbeStatus::Unknown,
        }
    }

    /// Which probe it is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// Its timing and thresholds.
    pub fn timing(&self) -> ProbeTiming {
        self.timing
    }

    /// The probe's spec.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// What it currently says.
    pub fn status(&self) -> ProbeStatus {
        self.status
    }

    /// Whether a run is in flight.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts over for a new container instance: the initial status, no run counted, none in
    /// flight (the one for the old instance is aborted), the first run due at once (after the
    /// initial delay).
    pub fn reset(&mut self) {
        self.status = ProbeWorker::initial(self.kind);
        self.last = None;
        self.run = 0;
        self.on_hold = false;
        self.next_run = None;
        self.running = None;
    }

    /// Counts a run's outcome (kubelet's `doProbe`): the status changes once `failureThreshold`
    /// failures or `successThreshold` successes come in a row; a run that could not be made
    /// ([`ProbeError`]) counts neither way. Returns the status when the run set it. After a
    /// liveness or startup failure the worker holds off until [`reset`](ProbeWorker::reset).
    pub fn record(&mut self, outcome: &Result<ProbeOutcome, ProbeError>) -> Option<ProbeStatus> {
        let Ok(outcome) = outcome else {
            return None;
        };
        let passed = outcome.result.passed();
        if self.last == Some(passed) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(passed);
            self.run = 1;
        }
        let threshold = if passed {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        self.status = if passed {
            ProbeStatus::Success
        } else {
            ProbeStatus::Failure
        };
        if !passed && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            self.on_hold = true;
            self.run = 0;
        }
        Some(self.status)
    }

    /// Whether a run is due at `now` for a container that has run for `running_for`: none in
    /// flight, not on hold, the initial delay over (in whole seconds, as kubelet counts), and the
    /// period since the last run over (give or take a tenth of it, at most 100 ms).
    pub fn due(&self, now: Instant, running_for: Duration) -> bool {
        if self.running.is_some() || self.on_hold {
            return false;
        }
        if running_for.as_secs() < self.timing.initial_delay.as_secs() {
            return false;
        }
        let early = (self.timing.period / 10).min(MAX_EARLY);
        self.next_run
            .is_none_or(|next| now.checked_add(early).is_none_or(|n| n >= next))
    }

    /// Starts a run against `target` as a task (see the [module](self)). The next is due a
    /// period after this one was: runs keep a fixed cadence, so running a little early or late
    /// does not make them drift (after a pause longer than a period, the cadence starts again
    /// from `now`).
    pub fn start(&mut self, runtime: Arc<dyn ContainerRuntime>, target: ProbeTarget, now: Instant) {
        let probe = self.probe.clone();
        self.running = Some(Task::spawn(async move {
            run_probe(runtime.as_ref(), &probe, &target).await
        }));
        let period = self.timing.period;
        self.next_run = self
            .next_run
            .and_then(|due| due.checked_add(period))
            .filter(|next| *next > now)
            .or_else(|| now.checked_add(period));
    }

    /// The outcome of the run in flight, if it has finished.
    pub fn take_outcome(&mut self) -> Option<Result<ProbeOutcome, ProbeError>> {
        Task::take_finished(&mut self.running)
            .map(|output| output.unwrap_or_else(|error| Err(ProbeError::Task(error))))
    }
}

/// What [`ContainerProbes::step`] needs to know of the running container.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningContainer {
    /// Where the probes go (its `container_id` is the running instance).
    pub target: ProbeTarget,
    /// How long it has been running (since its `startedAt`).
    pub running_for: Duration,
    /// The pod's `terminationGracePeriodSeconds` (a probe's own replaces it for its kill).
    pub termination_grace: Duration,
    /// Whether the pod's restart policy restarts it after a kill (not `Never`).
    pub restarts: bool,
}

/// The kill of an instance after a liveness or startup failure.
#[derive(Debug)]
struct Kill {
    container_id: String,
    task: Option<Task<Result<(), RuntimeError>>>,
}

/// The probes of one container and what ties them together (see the [module](self)).
#[derive(Debug)]
pub struct ContainerProbes {
    name: String,
    /// The instance probed.
    instance: Option<String>,
    startup: Option<ProbeWorker>,
    liveness: Option<ProbeWorker>,
    readiness: Option<ProbeWorker>,
    kill: Option<Kill>,
}

impl ContainerProbes {
    /// The probes `container` declares.
    pub fn new(container: &Container) -> ContainerProbes {
        let worker =
            |kind, probe: &Option<Probe>| probe.as_ref().map(|probe| ProbeWorker::new(kind, probe));
        ContainerProbes {
            name: container.name.clone(),
            instance: None,
            startup: worker(ProbeKind::Startup, &container.startup_probe),
            liveness: worker(ProbeKind::Liveness, &container.liveness_probe),
            readiness: worker(ProbeKind::Readiness, &container.readiness_probe),
            kill: None,
        }
    }

    /// Whether `container` declares any probe.
    pub fn any(container: &Container) -> bool {
        container.startup_probe.is_some()
            || container.liveness_probe.is_some()
            || container.readiness_probe.is_some()
    }

    /// The worker of `kind`, if the container has that probe.
    pub fn worker(&self, kind: ProbeKind) -> Option<&ProbeWorker> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    fn workers_mut(&mut self) -> impl Iterator<Item = &mut ProbeWorker> {
        [
            self.startup.as_mut(),
            self.liveness.as_mut(),
            self.readiness.as_mut(),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether the container has started: its startup probe has succeeded, or it has none.
    pub fn started(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|w| w.status() == ProbeStatus::Success)
    }

    /// Whether the container is ready: started, and its readiness probe passing (or it has
    /// none).
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .readiness
                .as_ref()
                .is_none_or(|w| w.status() == ProbeStatus::Success)
    }

    /// Whether a probe killed the instance `container_id` (it is then restarted under any
    /// restart policy but `Never`, whatever its exit code, as kubelet does).
    pub fn killed(&self, container_id: &str) -> bool {
        self.kill
            .as_ref()
            .is_some_and(|kill| kill.container_id == container_id)
    }

    /// One step for the running instance `running.target.container_id`: starts over if it is a
    /// new instance; applies the outcomes of the runs that finished; kills the instance (in a
    /// task) when its liveness or startup probe now fails; starts the runs that are due (the
    /// startup probe until it succeeds, then the others). Never waits for a probe. Returns the
    /// events to report.
    ///
    /// Runs and kills are tokio tasks: call it within a tokio runtime (as the agent's sync is).
    pub fn step(
        &mut self,
        runtime: &Arc<dyn ContainerRuntime>,
        running: &RunningContainer,
    ) -> Vec<ContainerEvent> {
        let id = running.target.container_id.clone();
        if self.instance.as_deref() != Some(id.as_str()) {
            self.instance = Some(id.clone());
            self.workers_mut().for_each(ProbeWorker::reset);
        }
        let mut events = Vec::new();
        let name = self.name.clone();
        for worker in self.workers_mut() {
            let Some(outcome) = worker.take_outcome() else {
                continue;
            };
            worker.record(&outcome);
            let kind = worker.kind();
            let (reason, message) = match &outcome {
                Ok(o) if o.result == ProbeResult::Failure => {
                    ("Unhealthy", format!("{kind} probe failed: {}", o.message))
                }
                Ok(o) if o.result == ProbeResult::Warning => (
                    "ProbeWarning",
                    format!("{kind} probe warning: {}", o.message),
                ),
                Ok(_) => continue,
                Err(error) => ("Unhealthy", format!("{kind} probe errored: {error}")),
            };
            events.push(ContainerEvent {
                container: name.clone(),
                event_type: EventType::Warning,
                reason: reason.to_owned(),
                message,
            });
        }

        // A finished kill that failed is tried again; one that worked waits for the exit.
        if let Some(kill) = &mut self.kill
            && let Some(Ok(Err(_)) | Err(_)) = Task::take_finished(&mut kill.task)
        {
            self.kill = None;
        }
        let failed = [&self.startup, &self.liveness]
            .into_iter()
            .flatten()
            .find(|w| w.status() == ProbeStatus::Failure)
            .map(|w| (w.kind(), w.probe().termination_grace_period_seconds));
        if let Some((kind, probe_grace)) = failed {
            if !self.killed(&id) {
                let grace = probe_grace
                    .map_or(running.termination_grace, |seconds| {
                        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
                    })
                    .max(MIN_KILL_GRACE);
                let mut message = format!(
                    "Container {name} failed {} probe",
                    kind.as_str().to_ascii_lowercase()
                );
                if running.restarts {
                    message.push_str(", will be restarted");
                }
                events.push(ContainerEvent {
                    container: name,
                    event_type: EventType::Normal,
                    reason: "Killing".to_owned(),
                    message,
                });
                let runtime = runtime.clone();
                let container_id = id.clone();
                self.kill = Some(Kill {
                    container_id: id,
                    task: Some(Task::spawn(async move {
                        runtime.stop_container(&container_id, grace).await
                    })),
                });
            }
            return events;
        }

        let now = Instant::now();
        let started = self.started();
        for worker in self.workers_mut() {
            let gated = (worker.kind() == ProbeKind::Startup) == started;
            if !gated && worker.due(now, running.running_for) {
                worker.start(runtime.clone(), running.target.clone(), now);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::container_runtime::fake::{FakeRuntime, Operation};
    use crate::container_runtime::{
        ContainerConfig, ContainerMetadata, ExecResult, PodSandboxConfig, PodSandboxMetadata,
    };

    type Heads = Arc<Mutex<Vec<String>>>;

    /// A tiny HTTP server on 127.0.0.1: answers each connection with what `respond` makes of
    /// the request's head (`None`: say nothing and hold the connection). Its port, and the heads
    /// it received.
    async fn serve(
        respond: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> (u16, Heads) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads: Heads = Arc::default();
        let received = heads.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let received = received.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    received.lock().unwrap().push(head.clone());
                    match respond(&head) {
                        Some(response) => {
                            let _ = stream.write_all(response.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        (port, heads)
    }

    fn response(status: &str, headers: &str, body: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn path_of(head: &str) -> &str {
        head.split(' ').nth(1).unwrap_or_default()
    }

    fn local_target() -> ProbeTarget {
        ProbeTarget {
            container_id: "c-1".to_owned(),
            pod_ip: Some("127.0.0.1".parse().unwrap()),
            ports: vec![
                serde_json::from_value(json!({"name": "http", "containerPort": 1})).unwrap(),
            ],
        }
    }

    fn http(port: u16, path: &str, extra: serde_json::Value) -> Probe {
        let mut action = json!({"path": path, "port": port});
        if let (Some(action), Some(extra)) = (action.as_object_mut(), extra.as_object()) {
            action.extend(extra.clone());
        }
        serde_json::from_value(json!({"httpGet": action})).unwrap()
    }

    async fn probe_once(probe: &Probe) -> ProbeOutcome {
        run_probe(&FakeRuntime::new(), probe, &local_target())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn http_get_sends_kubelets_request_and_passes_from_200_to_399() {
        let (port, heads) = serve(|head| match path_of(head) {
            "/healthz" => response("200 OK", "", "ok\n"),
            _ => response("204 No Content", "", ""),
        })
        .await;
        let outcome = probe_once(&http(port, "/healthz", json!({}))).await;
        assert_eq!(outcome, ProbeOutcome::success("ok\n"));
        assert_eq!(
            heads.lock().unwrap()[0],
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.33\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n"
            )
        );

        // The probe's headers replace the defaults of the same name; an empty Accept drops it.
        let probe = http(
            port,
            "/other?x=1",
            json!({"httpHeaders": [
                {"name": "user-agent", "value": "mine"},
                {"name": "Accept", "value": ""},
                {"name": "Host", "value": "web.example"},
                {"name": "X-Trace", "value": "a"},
                {"name": "X-Trace", "value": "b"},
            ]}),
        );
        assert_eq!(probe_once(&probe).await.result, ProbeResult::Success);
        assert_eq!(
            heads.lock().unwrap()[1],
            "GET /other?x=1 HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\
             user-agent: mine\r\nX-Trace: a\r\nX-Trace: b\r\n\r\n"
        );

        // What cannot go in a request line is escaped; escapes stay.
        probe_once(&http(port, "/a b/é%41", json!({}))).await;
        assert!(
            heads.lock().unwrap()[2].starts_with("GET /a%20b/%C3%A9%41 HTTP/1.1\r\n"),
            "{:?}",
            heads.lock().unwrap()[2]
        );
    }

    #[tokio::test]
    async fn http_get_fails_from_400_with_kubelets_message() {
        let (port, _) = serve(|head| match path_of(head) {
            "/missing" => response("404 Not Found", "", "no such page"),
            _ => response("500 Internal Server Error", "", "failing\n"),
        })
        .await;
        for (path, status) in [("/healthz", 500), ("/missing", 404)] {
            assert_eq!(
                probe_once(&http(port, path, json!({}))).await,
                ProbeOutcome::failure(format!("HTTP probe failed with statuscode: {status}"))
            );
        }
    }

    #[tokio::test]
    async fn http_get_follows_redirects_to_the_same_host_only() {
        let (port, heads) = serve(move |head| match path_of(head) {
            "/old" => response("301 Moved Permanently", "Location: new\r\n", ""),
            "/new" => response("302 Found", "Location: /final?from=new\r\n", ""),
            "/final?from=new" => response("200 OK", "", "arrived"),
            "/loop" => response("307 Temporary Redirect", "Location: /loop\r\n", ""),
            "/away" => response(
                "302 Found",
                "Location: http://elsewhere.example/\r\n",
                "moved away",
            ),
            _ => response("304 Not Modified", "", ""),
        })
        .await;
        assert_eq!(
            probe_once(&http(port, "/old", json!({}))).await,
            ProbeOutcome::success("arrived")
        );
        assert_eq!(heads.lock().unwrap().len(), 3);

        // Ten requests at most.
        let outcome = probe_once(&http(port, "/loop", json!({}))).await;
        assert_eq!(
            outcome,
            ProbeOutcome::failure(format!(
                "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
            ))
        );
        assert_eq!(heads.lock().unwrap().len(), 3 + MAX_REDIRECTS);

        // Another host: not followed, a success with a warning.
        let outcome = probe_once(&http(port, "/away", json!({}))).await;
        assert_eq!(
            outcome,
            ProbeOutcome::new(
                ProbeResult::Warning,
                "Probe terminated redirects, Response body: moved away"
            )
        );
        assert!(outcome.result.passed());
        assert_eq!(
            probe_once(&http(port, "/cached", json!({}))).await.result,
            ProbeResult::Warning
        );
    }

    #[tokio::test]
    async fn http_get_reads_at_most_10_kib_of_the_body() {
        let big = "x".repeat(50 * 1024);
        let (port, _) = serve(move |head| match path_of(head) {
            "/chunked" => {
                let chunk = format!("{:x}\r\n{}\r\n", 4096, &big[..4096]);
                Some(format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                    chunk.repeat(12)
                ))
            }
            "/small-chunks" => Some(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                    .to_owned(),
            ),
            "/until-close" => Some(format!("HTTP/1.0 200 OK\r\n\r\n{}", &big[..100])),
            _ => response("200 OK", "", &big),
        })
        .await;
        for path in ["/length", "/chunked"] {
            let outcome = probe_once(&http(port, path, json!({}))).await;
            assert_eq!(outcome.result, ProbeResult::Success, "{path}");
            assert_eq!(outcome.message.len(), MAX_BODY_BYTES, "{path}");
        }
        assert_eq!(
            probe_once(&http(port, "/small-chunks", json!({}))).await,
            ProbeOutcome::success("abcde")
        );
        assert_eq!(
            probe_once(&http(port, "/until-close", json!({})))
                .await
                .message
                .len(),
            100
        );
    }

    #[tokio::test]
    async fn http_get_times_out_and_refuses_https_and_grpc() {
        let (port, _) = serve(|_| None).await;
        let started = Instant::now();
        let outcome = probe_once(&http(port, "/hang", json!({}))).await;
        assert_eq!(
            outcome,
            ProbeOutcome::failure(format!(
                "Get \"http://127.0.0.1:{port}/hang\": context deadline exceeded \
                 (Client.Timeout exceeded while awaiting headers)"
            ))
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(3),
            "{took:?}"
        );

        let outcome = probe_once(&http(port, "/", json!({"scheme": "HTTPS"}))).await;
        assert_eq!(outcome.result, ProbeResult::Failure);
        assert!(
            outcome
                .message
                .ends_with("HTTPS probes are not supported by this agent"),
            "{outcome:?}"
        );
        let grpc: Probe = serde_json::from_value(json!({"grpc": {"port": 9000}})).unwrap();
        assert_eq!(
            probe_once(&grpc).await,
            ProbeOutcome::failure("gRPC probes are not supported by this agent")
        );
        let none = Probe::default();
        assert_eq!(
            run_probe(&FakeRuntime::new(), &none, &local_target()).await,
            Err(ProbeError::NoAction)
        );
    }

    #[tokio::test]
    async fn named_ports_resolve_from_the_container() {
        let (port, _) = serve(|_| response("200 OK", "", "")).await;
        let mut target = local_target();
        target.ports =
            vec![serde_json::from_value(json!({"name": "http", "containerPort": port})).unwrap()];
        let probe = http(0, "/", json!({"port": "http"}));
        let outcome = run_probe(&FakeRuntime::new(), &probe, &target).await;
        assert_eq!(outcome.map(|o| o.result), Ok(ProbeResult::Success));

        let missing = http(0, "/", json!({"port": "metrics"}));
        assert!(matches!(
            run_probe(&FakeRuntime::new(), &missing, &target).await,
            Err(ProbeError::Port { .. })
        ));
        assert_eq!(
            resolve_port(&IntOrString::String("8080".to_owned()), &[]),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::Int(70000), &[]).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &[]).is_err());
    }

    #[tokio::test]
    async fn tcp_socket_passes_when_it_connects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let probe: Probe = serde_json::from_value(json!({"tcpSocket": {"port": port}})).unwrap();
        assert_eq!(probe_once(&probe).await, ProbeOutcome::success(""));
        drop(listener);
        let outcome = probe_once(&probe).await;
        assert_eq!(outcome.result, ProbeResult::Failure);
        assert!(
            outcome
                .message
                .starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
            "{outcome:?}"
        );
    }

    /// Starts a container in a new sandbox of `runtime`; its id.
    async fn running_container(runtime: &FakeRuntime) -> String {
        let pod = PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: "web-1".to_owned(),
                namespace: "default".to_owned(),
                uid: "u-1".to_owned(),
                attempt: 0,
            },
            ..PodSandboxConfig::default()
        };
        let sandbox = runtime.run_pod_sandbox(&pod).await.unwrap();
        let config = ContainerConfig {
            metadata: ContainerMetadata {
                name: "web".to_owned(),
                attempt: 0,
            },
            image: "hello:1".to_owned(),
            ..ContainerConfig::default()
        };
        let id = runtime
            .create_container(&sandbox, &config, &pod)
            .await
            .unwrap();
        runtime.start_container(&id).await.unwrap();
        id
    }

    /// Answers each exec by its command's first word: the exit code set for it (0 if none).
    fn exit_codes(runtime: &FakeRuntime) -> Arc<Mutex<BTreeMap<String, i32>>> {
        let codes: Arc<Mutex<BTreeMap<String, i32>>> = Arc::default();
        let answers = codes.clone();
        runtime.set_exec(move |_, command| {
            let code = answers
                .lock()
                .unwrap()
                .get(&command[0])
                .copied()
                .unwrap_or(0);
            if code < 0 {
                return Err(RuntimeError::Timeout {
                    operation: "exec".to_owned(),
                    after: Duration::from_secs(1),
                });
            }
            Ok(ExecResult {
                stdout: if code == 0 { "fine\n" } else { "broken\n" }.into(),
                exit_code: code,
                ..ExecResult::default()
            })
        });
        codes
    }

    #[tokio::test(start_paused = true)]
    async fn exec_runs_the_command_in_the_container() {
        let runtime = FakeRuntime::new();
        let id = running_container(&runtime).await;
        let codes = exit_codes(&runtime);
        let command = vec!["check".to_owned(), "--deep".to_owned()];
        let timeout = Duration::from_secs(1);
        let outcome = exec_probe(&runtime, &id, &command, timeout).await;
        assert_eq!(outcome, Ok(ProbeOutcome::success("fine\n")));
        codes.lock().unwrap().insert("check".to_owned(), 3);
        let outcome = exec_probe(&runtime, &id, &command, timeout).await;
        assert_eq!(outcome, Ok(ProbeOutcome::failure("broken\n")));
        codes.lock().unwrap().insert("check".to_owned(), -1);
        let outcome = exec_probe(&runtime, &id, &command, timeout).await;
        assert_eq!(
            outcome,
            Ok(ProbeOutcome::failure("command \"check --deep\" timed out"))
        );
        assert_eq!(
            runtime.calls_of(Operation::ExecSync)[0].detail,
            "check --deep"
        );
        // A container that does not run: no verdict at all.
        runtime.exit_container(&id, 0);
        assert!(matches!(
            exec_probe(&runtime, &id, &command, timeout).await,
            Err(ProbeError::Runtime(_))
        ));
    }

    #[test]
    fn locations_resolve_against_the_url() {
        let base = HttpProbe {
            scheme: "http".to_owned(),
            host: "10.0.0.1".to_owned(),
            port: 8080,
            path: "/a/b/c?q=1".to_owned(),
            headers: Vec::new(),
        }
        .first_url();
        let join = |location: &str| base.join(location).map(|url| url.to_string());
        assert_eq!(join("d").as_deref(), Some("http://10.0.0.1:8080/a/b/d"));
        assert_eq!(join("../d").as_deref(), Some("http://10.0.0.1:8080/a/d"));
        assert_eq!(
            join("/x/./y/../z").as_deref(),
            Some("http://10.0.0.1:8080/x/z")
        );
        assert_eq!(
            join("?r=2").as_deref(),
            Some("http://10.0.0.1:8080/a/b/c?r=2")
        );
        assert_eq!(join("//other:81/p").as_deref(), Some("http://other:81/p"));
        assert_eq!(join("HTTPS://h/#frag").as_deref(), Some("https://h/"));
        assert_eq!(
            base.join("http://[::1]:9/v6").map(|u| (u.host, u.port)),
            Some(("::1".to_owned(), 9))
        );
        assert_eq!(base.join("http://h:port/"), None);
    }

    fn probe_spec(command: &str, extra: serde_json::Value) -> Probe {
        let mut spec = json!({"exec": {"command": [command]}, "periodSeconds": 1});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let probe = probe_spec(
            "ready",
            json!({"successThreshold": 2, "failureThreshold": 3}),
        );
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, &probe);
        assert_eq!(worker.status(), ProbeStatus::Failure);
        let pass = Ok(ProbeOutcome::success(""));
        let fail = Ok(ProbeOutcome::failure("no"));
        let broken = Err(ProbeError::NoAction);
        assert_eq!(worker.record(&pass), None);
        assert_eq!(
            worker.record(&broken),
            None,
            "a run that could not be made counts not"
        );
        assert_eq!(worker.record(&pass), Some(ProbeStatus::Success));
        assert_eq!(worker.record(&fail), None);
        assert_eq!(worker.record(&fail), None);
        assert_eq!(worker.record(&pass), None, "the run of failures is broken");
        assert_eq!(worker.status(), ProbeStatus::Success);
        for _ in 0..2 {
            assert_eq!(worker.record(&fail), None);
        }
        assert_eq!(worker.record(&fail), Some(ProbeStatus::Failure));
        // A warning passes.
        let warning = Ok(ProbeOutcome::new(ProbeResult::Warning, "moved"));
        worker.record(&warning);
        assert_eq!(worker.record(&warning), Some(ProbeStatus::Success));

        let liveness = ProbeWorker::new(ProbeKind::Liveness, &probe);
        assert_eq!(liveness.status(), ProbeStatus::Success);
        let startup = ProbeWorker::new(ProbeKind::Startup, &probe);
        assert_eq!(startup.status(), ProbeStatus::Unknown);
        assert_eq!(
            ProbeTiming::of(&Probe::default()),
            ProbeTiming {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    /// The probes of a container with `probes` (`livenessProbe`, ...), stepped against a running
    /// container of a FakeRuntime.
    struct Harness {
        runtime: FakeRuntime,
        shared: Arc<dyn ContainerRuntime>,
        probes: ContainerProbes,
        running: RunningContainer,
        codes: Arc<Mutex<BTreeMap<String, i32>>>,
    }

    impl Harness {
        async fn new(probes: serde_json::Value) -> Harness {
            let mut container = json!({"name": "web", "image": "hello:1"});
            if let (Some(container), Some(probes)) = (container.as_object_mut(), probes.as_object())
            {
                container.extend(probes.clone());
            }
            let container: Container = serde_json::from_value(container).unwrap();
            let runtime = FakeRuntime::new();
            let id = running_container(&runtime).await;
            let codes = exit_codes(&runtime);
            Harness {
                shared: Arc::new(runtime.clone()),
                runtime,
                probes: ContainerProbes::new(&container),
                running: RunningContainer {
                    target: ProbeTarget {
                        container_id: id,
                        ..ProbeTarget::default()
                    },
                    running_for: Duration::ZERO,
                    termination_grace: Duration::from_secs(30),
                    restarts: true,
                },
                codes,
            }
        }

        fn set_exit(&self, command: &str, code: i32) {
            self.codes.lock().unwrap().insert(command.to_owned(), code);
        }

        /// Steps, then lets the tasks it started (runs, kills) do their work: the fake answers at
        /// once, so their outcomes are there for the next step.
        async fn step(&mut self) -> Vec<ContainerEvent> {
            let events = self.probes.step(&self.shared, &self.running);
            tokio::time::sleep(Duration::from_millis(1)).await;
            events
        }

        /// Lets `seconds` pass, then steps.
        async fn step_after(&mut self, seconds: u64) -> Vec<ContainerEvent> {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            self.running.running_for += Duration::from_secs(seconds);
            self.step().await
        }

        fn execs(&self, command: &str) -> usize {
            self.runtime
                .calls_of(Operation::ExecSync)
                .iter()
                .filter(|call| call.detail == command)
                .count()
        }
    }

    // A step applies the runs that finished since the step before and starts the due ones: an
    // exit code set before a step is seen by the run it starts, and counted at the next step.

    #[tokio::test(start_paused = true)]
    async fn readiness_starts_not_ready_and_flips_with_its_thresholds() {
        let mut h = Harness::new(json!({"readinessProbe": probe_spec("ready",
            json!({"failureThreshold": 2, "successThreshold": 2}))}))
        .await;
        assert!(h.step().await.is_empty());
        assert!(h.probes.started(), "no startup probe: started at once");
        assert!(!h.probes.ready(), "not ready before the first success");
        h.step_after(1).await;
        assert!(!h.probes.ready(), "one success of the two needed");
        h.set_exit("ready", 1);
        h.step_after(1).await;
        assert!(h.probes.ready());

        let events = h.step_after(1).await;
        assert!(h.probes.ready(), "one failure of the two needed");
        assert_eq!(
            events,
            [ContainerEvent {
                container: "web".to_owned(),
                event_type: EventType::Warning,
                reason: "Unhealthy".to_owned(),
                message: "Readiness probe failed: broken\n".to_owned(),
            }]
        );
        h.set_exit("ready", 0);
        h.step_after(1).await;
        assert!(!h.probes.ready());
        // Never killed for it.
        assert!(h.runtime.calls_of(Operation::StopContainer).is_empty());
        h.step_after(1).await;
        assert!(!h.probes.ready(), "one success of the two needed");
        h.step_after(1).await;
        assert!(h.probes.ready());

        // One run per period, however often it is stepped.
        let before = h.execs("ready");
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            h.step().await;
        }
        assert_eq!(h.execs("ready") - before, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_waits_its_initial_delay_then_kills_after_its_failure_threshold() {
        let mut h = Harness::new(json!({
            "livenessProbe": probe_spec("live", json!({"initialDelaySeconds": 3,
                "failureThreshold": 2, "terminationGracePeriodSeconds": 7})),
        }))
        .await;
        h.set_exit("live", 1);
        h.step().await;
        assert!(
            h.probes.ready() && h.probes.started(),
            "liveness starts passing"
        );
        h.step_after(1).await;
        h.step_after(1).await;
        assert_eq!(h.execs("live"), 0, "within the initial delay");
        h.step_after(1).await;
        assert_eq!(h.execs("live"), 1);
        let events = h.step_after(1).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(h.runtime.calls_of(Operation::StopContainer).is_empty());
        let events = h.step_after(1).await;
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Unhealthy", "Killing"]);
        assert_eq!(
            events[1].message,
            "Container web failed liveness probe, will be restarted"
        );
        assert_eq!(events[1].event_type, EventType::Normal);
        // With the probe's own grace period.
        let stops = h.runtime.calls_of(Operation::StopContainer);
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].detail, "7s");
        assert!(h.probes.killed(&h.running.target.container_id));
        // On hold: no more runs, no second kill, while the instance is still seen running.
        let execs = h.execs("live");
        assert!(h.step_after(1).await.is_empty());
        assert!(h.step_after(1).await.is_empty());
        assert_eq!(h.execs("live"), execs);
        assert_eq!(h.runtime.calls_of(Operation::StopContainer).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_kill_is_tried_again_with_at_least_two_seconds() {
        let mut h = Harness::new(json!({
            "livenessProbe": probe_spec("live", json!({"failureThreshold": 1})),
        }))
        .await;
        h.running.termination_grace = Duration::ZERO;
        h.running.restarts = false;
        h.set_exit("live", 1);
        h.runtime.fail_next(
            Operation::StopContainer,
            RuntimeError::Unavailable("busy".to_owned()),
        );
        h.step().await;
        let events = h.step_after(1).await;
        assert_eq!(
            events.last().map(|e| e.message.as_str()),
            Some("Container web failed liveness probe")
        );
        h.step().await;
        let stops = h.runtime.calls_of(Operation::StopContainer);
        assert_eq!(stops.len(), 2, "{stops:?}");
        // The pod's grace period, but at least kubelet's 2 s.
        assert_eq!(stops[1].detail, "2s");
        h.step().await;
        assert_eq!(h.runtime.calls_of(Operation::StopContainer).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_the_other_probes_and_kills_when_it_fails() {
        let mut h = Harness::new(json!({
            "startupProbe": probe_spec("start", json!({"failureThreshold": 3})),
            "livenessProbe": probe_spec("live", json!({})),
            "readinessProbe": probe_spec("ready", json!({})),
        }))
        .await;
        h.set_exit("start", 1);
        h.step().await;
        assert!(!h.probes.started() && !h.probes.ready());
        h.set_exit("start", 0);
        h.step_after(1).await;
        assert!(!h.probes.started());
        assert_eq!((h.execs("live"), h.execs("ready")), (0, 0));
        h.step_after(1).await;
        assert!(h.probes.started());
        assert!(!h.probes.ready(), "readiness has only just run");
        assert_eq!((h.execs("live"), h.execs("ready")), (1, 1));
        h.step_after(1).await;
        assert!(h.probes.ready());
        assert_eq!(h.execs("start"), 2, "no startup runs once started");

        // A new instance: everything starts over, and a startup failure kills it.
        h.running.target.container_id = running_container(&h.runtime).await;
        h.running.running_for = Duration::ZERO;
        h.set_exit("start", 1);
        h.step().await;
        assert!(!h.probes.started() && !h.probes.ready());
        let mut events = Vec::new();
        for _ in 0..3 {
            events.extend(h.step_after(1).await);
        }
        assert_eq!(
            events.last().map(|e| e.message.as_str()),
            Some("Container web failed startup probe, will be restarted")
        );
        let stops = h.runtime.calls_of(Operation::StopContainer);
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].target, h.running.target.container_id);
        assert_eq!(stops[0].detail, "30s");
        assert_eq!(
            (h.execs("live"), h.execs("ready")),
            (2, 2),
            "gated again for the new instance"
        );
    }
}
