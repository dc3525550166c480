//! The container runtime seam: what the node agent asks of a runtime, shaped as Kubernetes' CRI.
//!
//! The node agent (the kubelet of Orchestra) is the only caller. It runs each pod bound to its
//! node as a **pod sandbox** (the environment the pod's containers share: its network identity,
//! its log directory) holding **containers** created from a [`ContainerConfig`], started, stopped
//! with a grace period, inspected and removed. Two traits split the work as CRI's two services do:
//!
//! - [`ContainerRuntime`] (CRI's `RuntimeService`): sandboxes, containers, logs, `exec` (for exec
//!   probes), the runtime's version;
//! - [`ImageService`] (CRI's `ImageService`): the node's images — list, status, import from a
//!   tarball, pull, remove.
//!
//! The backends live in `orchestra-runtime` (the daemonless process runtime, youki/libcontainer,
//! Docker); [`FakeRuntime`](fake::FakeRuntime) is the in-memory one for tests, which records every
//! call and fails the ones a test asks it to.
//!
//! Calls follow CRI's contract: stopping or removing what is already stopped or gone succeeds
//! (the agent retries them freely); asking about what does not exist is
//! [`RuntimeError::NotFound`]; every error names what failed.

pub mod fake;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use jiff::Timestamp;

/// Labels or annotations, by key.
pub type Labels = BTreeMap<String, String>;

/// The annotation of a [`ContainerStatus`] saying which filesystem the container's process
/// runs on: [`ROOTFS_IMAGE`] or [`ROOTFS_HOST`]. A runtime that reports it sets it from the
/// container's creation on; one that does not (or an older one) leaves it out.
pub const ROOTFS_ANNOTATION: &str = "orchestra.io/rootfs";

/// [`ROOTFS_ANNOTATION`]'s value for a container run from its image's root filesystem (the
/// image is in the node's image store).
pub const ROOTFS_IMAGE: &str = "image";

/// [`ROOTFS_ANNOTATION`]'s value for a container whose command runs on the host's filesystem
/// (its image is not in the node's image store, as rkt's "fly" stage ran commands).
pub const ROOTFS_HOST: &str = "host";

/// The annotation of a [`ContainerStatus`] saying, for people, where and how the container's
/// process runs: a phrase that completes "Started container web (…)" in the pod's events,
/// such as `from image docker.io/library/busybox:latest's root filesystem, chrooted` or
/// `on the host filesystem: image hello:1 is not in the node's image store`. It may change
/// when the container starts (how it runs is settled then); its wording is not a contract,
/// [`ROOTFS_ANNOTATION`] is.
pub const ROOTFS_DETAIL_ANNOTATION: &str = "orchestra.io/rootfs-detail";

/// The annotation of a [`ContainerStatus`] holding the id (`sha256:…`) of the image the
/// container runs from, when it runs from an image of the node's store (CRI's `image_ref`);
/// [`ContainerStatus::image`] is then the image's normalised reference.
pub const IMAGE_ID_ANNOTATION: &str = "orchestra.io/image-id";

/// What identifies a pod sandbox: the pod, and which attempt at running it this is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxMetadata {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's uid.
    pub uid: String,
    /// 0 for the first sandbox of the pod, then one more for each re-creation.
    pub attempt: u32,
}

/// A transport protocol of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A container port the sandbox exposes, and where on the host, if anywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// The protocol.
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The host port it is published on, if any (`hostPort`).
    pub host_port: Option<u16>,
    /// The host address it is published on (`hostIP`); all addresses when `None`.
    pub host_ip: Option<IpAddr>,
}

/// The DNS configuration of a pod (its `resolv.conf`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Resolver options (`ndots:5`, ...).
    pub options: Vec<String>,
}

/// What a pod sandbox is made from (CRI's `PodSandboxConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// The pod it is for.
    pub metadata: PodSandboxMetadata,
    /// The pod's host name.
    pub hostname: String,
    /// The directory the containers' logs go to (each container's
    /// [`ContainerConfig::log_path`] is relative to it).
    pub log_directory: Option<PathBuf>,
    /// The addresses the pod network gave the pod, if the agent attached it before (the process
    /// runtime passes them on; runtimes with their own network namespace report theirs).
    pub ips: Vec<IpAddr>,
    /// The ports the pod's containers declare.
    pub port_mappings: Vec<PortMapping>,
    /// The pod's DNS configuration, if it is not the host's.
    pub dns: Option<DnsConfig>,
    /// Labels, by which sandboxes are listed (the agent puts the pod's uid there).
    pub labels: Labels,
    /// Annotations, kept and reported back.
    pub annotations: Labels,
}

/// Whether a sandbox can hold running containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodSandboxState {
    /// Running: containers can be created and started in it.
    Ready,
    /// Stopped: its containers are stopped and none can start.
    NotReady,
}

/// What the runtime reports of a sandbox (CRI's `PodSandboxStatus`, also what listing returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// The runtime's id for it.
    pub id: String,
    /// The pod it is for.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: PodSandboxState,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its addresses (the pod IPs), first the primary one.
    pub ips: Vec<IpAddr>,
    /// Its labels.
    pub labels: Labels,
    /// Its annotations.
    pub annotations: Labels,
}

/// Which sandboxes to list: every condition set must hold (CRI's `PodSandboxFilter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxFilter {
    /// Only this id.
    pub id: Option<String>,
    /// Only in this state.
    pub state: Option<PodSandboxState>,
    /// Only with all of these labels.
    pub labels: Labels,
}

impl PodSandboxFilter {
    /// Whether `sandbox` passes the filter.
    pub fn matches(&self, sandbox: &PodSandboxStatus) -> bool {
        self.id.as_ref().is_none_or(|id| *id == sandbox.id)
            && self.state.is_none_or(|state| state == sandbox.state)
            && has_labels(&sandbox.labels, &self.labels)
    }
}

/// What identifies a container within its sandbox: its name in the pod, and which attempt at
/// running it this is (the restart count).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMetadata {
    /// The container's name in the pod spec.
    pub name: String,
    /// 0 for the first container of that name in the sandbox, then one more per restart.
    pub attempt: u32,
}

/// A path of the host made visible inside the container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// Where it appears in the container.
    pub container_path: PathBuf,
    /// What it is on the host.
    pub host_path: PathBuf,
    /// Whether the container may only read it.
    pub read_only: bool,
}

/// The limits a runtime applies to a container where it can (cgroups), from the container's
/// `resources` (CRI's `LinuxContainerResources`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// CPU shares (relative weight), from the cpu request.
    pub cpu_shares: Option<u64>,
    /// The CFS period in microseconds, for `cpu_quota`.
    pub cpu_period: Option<u64>,
    /// The CFS quota in microseconds per period, from the cpu limit.
    pub cpu_quota: Option<i64>,
    /// The memory limit in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// The most processes it may have.
    pub pids_limit: Option<i64>,
}

/// What a container is made from (CRI's `ContainerConfig`), the pod spec's container with
/// everything the agent resolved: the command, arguments, environment (downward API, ConfigMaps,
/// Secrets already substituted), working directory, mounts and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Its name and attempt.
    pub metadata: ContainerMetadata,
    /// The image it runs (a reference such as `hello:1`, as the pod spec names it).
    pub image: String,
    /// The executable and its leading arguments (the pod spec's `command`; the image's
    /// entrypoint when empty).
    pub command: Vec<String>,
    /// Further arguments (the pod spec's `args`; the image's when empty).
    pub args: Vec<String>,
    /// The working directory, if not the image's.
    pub working_dir: Option<PathBuf>,
    /// Environment variables, in order (later ones may refer to earlier ones already expanded).
    pub env: Vec<(String, String)>,
    /// Host paths made visible inside.
    pub mounts: Vec<Mount>,
    /// Where its output goes, relative to the sandbox's
    /// [`log_directory`](PodSandboxConfig::log_directory).
    pub log_path: Option<PathBuf>,
    /// Limits.
    pub resources: ContainerResources,
    /// Labels, by which containers are listed.
    pub labels: Labels,
    /// Annotations, kept and reported back.
    pub annotations: Labels,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (or it was stopped).
    Exited,
    /// The runtime cannot tell.
    Unknown,
}

/// What the runtime reports of a container (CRI's `ContainerStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The runtime's id for it.
    pub id: String,
    /// The sandbox it is in.
    pub pod_sandbox_id: String,
    /// Its name and attempt.
    pub metadata: ContainerMetadata,
    /// Where it is in its life.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its process started, if it did.
    pub started_at: Option<Timestamp>,
    /// When it ended, if it did.
    pub finished_at: Option<Timestamp>,
    /// How it ended, if it did: the exit code, or 128 + the signal that killed it.
    pub exit_code: Option<i32>,
    /// The image it runs: as the container names it, or its normalised reference
    /// (`docker.io/library/busybox:latest`) when the runtime found it in the node's image store
    /// (see [`ROOTFS_ANNOTATION`] and [`IMAGE_ID_ANNOTATION`]).
    pub image: String,
    /// Why it is in its state, in one word (`Completed`, `Error`, `OOMKilled`, ...).
    pub reason: String,
    /// More about it, for people.
    pub message: String,
    /// Its log file, if it has one.
    pub log_path: Option<PathBuf>,
    /// The process id of its main process while it runs, where the runtime has one.
    pub pid: Option<u32>,
    /// Its labels.
    pub labels: Labels,
    /// Its annotations: the container's, and those the runtime reports ([`ROOTFS_ANNOTATION`],
    /// [`ROOTFS_DETAIL_ANNOTATION`], [`IMAGE_ID_ANNOTATION`]).
    pub annotations: Labels,
}

/// Which containers to list: every condition set must hold (CRI's `ContainerFilter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Only this id.
    pub id: Option<String>,
    /// Only in this sandbox.
    pub pod_sandbox_id: Option<String>,
    /// Only in this state.
    pub state: Option<ContainerState>,
    /// Only with all of these labels.
    pub labels: Labels,
}

impl ContainerFilter {
    /// Whether `container` passes the filter.
    pub fn matches(&self, container: &ContainerStatus) -> bool {
        self.id.as_ref().is_none_or(|id| *id == container.id)
            && self
                .pod_sandbox_id
                .as_ref()
                .is_none_or(|id| *id == container.pod_sandbox_id)
            && self.state.is_none_or(|state| state == container.state)
            && has_labels(&container.labels, &self.labels)
    }
}

fn has_labels(labels: &Labels, wanted: &Labels) -> bool {
    wanted
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: Timestamp,
    /// Which stream.
    pub stream: LogStream,
    /// The line, without its newline.
    pub content: Bytes,
}

/// What part of a container's log to read (`kubectl logs` options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines as they are written, until the container ends.
    pub follow: bool,
    /// Only the last this many lines written so far (then, with `follow`, the new ones).
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
}

/// A container's log lines, in the order written.
pub type LogLines = BoxStream<'static, Result<LogLine, RuntimeError>>;

/// The outcome of a command run in a container ([`ContainerRuntime::exec_sync`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// What it wrote to standard output.
    pub stdout: Bytes,
    /// What it wrote to standard error.
    pub stderr: Bytes,
    /// Its exit code (128 + the signal when killed).
    pub exit_code: i32,
}

/// Which runtime answers, and its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The runtime's name (`process`, `docker`, ...), shown as the node's
    /// `containerRuntimeVersion` prefix.
    pub runtime_name: String,
    /// Its version.
    pub runtime_version: String,
}

/// An image in the node's image store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Its id (`sha256:...` of its configuration).
    pub id: String,
    /// The references it is known by (`hello:1`).
    pub repo_tags: Vec<String>,
    /// Its unpacked size in bytes.
    pub size_bytes: u64,
}

/// What a runtime call is about, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A pod sandbox.
    PodSandbox,
    /// A container.
    Container,
    /// An image.
    Image,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::PodSandbox => "pod sandbox",
            ObjectKind::Container => "container",
            ObjectKind::Image => "image",
        })
    }
}

/// Why a runtime call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox, container or image does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What was looked for.
        kind: ObjectKind,
        /// Its id or name.
        id: String,
    },
    /// The object cannot do this in its state (start a container that already ran, create a
    /// container in a stopped sandbox).
    #[error("{kind} {id:?}: {reason}")]
    FailedPrecondition {
        /// What the call was about.
        kind: ObjectKind,
        /// Its id.
        id: String,
        /// What is in the way.
        reason: String,
    },
    /// A field of the request cannot be used.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as a path (`command[0]`, `log_directory`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The call.
        operation: String,
        /// How long it was given.
        after: Duration,
    },
    /// This runtime cannot do that at all (an image pull without a registry, exec without a
    /// way in).
    #[error("not supported by this runtime: {0}")]
    Unsupported(String),
    /// The runtime (its daemon, its state directory) cannot be reached now; the call may be
    /// retried.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// Anything else, with the cause.
    #[error("runtime error: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// A [`RuntimeError::NotFound`].
    pub fn not_found(kind: ObjectKind, id: impl Into<String>) -> RuntimeError {
        RuntimeError::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Whether this says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound { .. })
    }
}

/// Sandboxes and containers (CRI's `RuntimeService`).
///
/// Stopping or removing a sandbox or container that is already stopped or gone succeeds, so the
/// node agent can retry after a crash; the other calls on a missing object return
/// [`RuntimeError::NotFound`].
#[async_trait]
pub trait ContainerRuntime: Send + Sync + fmt::Debug + 'static {
    /// The runtime's name and version.
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError>;

    /// Creates and starts a sandbox for a pod; returns its id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError>;

    /// Stops a sandbox: its running containers are killed at once (the agent stops them with
    /// their grace periods first) and it becomes [`PodSandboxState::NotReady`].
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes a sandbox and its containers, stopping them if they still run.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;

    /// A sandbox's status.
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError>;

    /// The sandboxes that pass `filter`, by id.
    async fn list_pod_sandboxes(
        &self,
        filter: &PodSandboxFilter,
    ) -> Result<Vec<PodSandboxStatus>, RuntimeError>;

    /// Creates a container in a ready sandbox, not started; returns its id.
    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError>;

    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// Stops a running container: asks it to end (SIGTERM), and kills it (SIGKILL) if it still
    /// runs after `grace`. Returns once it has ended.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Removes a container, killing it first if it still runs.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// A container's status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;

    /// The containers that pass `filter`, by id.
    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, RuntimeError>;

    /// A container's log: the lines asked for, and with [`LogOptions::follow`] the new ones
    /// until the container ends.
    async fn container_logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<LogLines, RuntimeError>;

    /// Runs `command` in a running container and waits for it, at most `timeout` (exec probes).
    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;
}

/// The node's images (CRI's `ImageService`).
#[async_trait]
pub trait ImageService: Send + Sync + fmt::Debug + 'static {
    /// Every image in the store.
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError>;

    /// The image a reference (`hello:1`) or id names, if the store has it.
    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError>;

    /// Imports the images of a tarball (an OCI image layout or a `docker save` archive);
    /// returns them.
    async fn import_image(&self, archive: &Path) -> Result<Vec<Image>, RuntimeError>;

    /// Fetches an image from its registry.
    async fn pull_image(&self, image: &str) -> Result<Image, RuntimeError>;

    /// Removes an image from the store (removing one that is not there succeeds).
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError>;
}
