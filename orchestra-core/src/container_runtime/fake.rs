//! [`FakeRuntime`]: an in-memory [`ContainerRuntime`] and [`ImageService`] for tests.
//!
//! It keeps sandboxes, containers, their logs and images in memory and follows the runtime
//! contract (states, idempotent stop and remove, filters), with no process behind any container.
//! A test plays what processes would do — a container exiting ([`FakeRuntime::exit_container`]),
//! writing output ([`FakeRuntime::write_log`]), ignoring SIGTERM
//! ([`FakeRuntime::ignore_term`]), answering an exec ([`FakeRuntime::set_exec`]) — reads back every
//! call ([`FakeRuntime::calls`]) and makes calls fail ([`FakeRuntime::fail_next`],
//! [`FakeRuntime::fail_always`]).
//!
//! # Examples
//!
//! ```
//! use orchestra_core::container_runtime::fake::{FakeRuntime, Operation};
//! use orchestra_core::container_runtime::{
//!     ContainerConfig, ContainerMetadata, ContainerRuntime, ContainerState, PodSandboxConfig,
//!     PodSandboxMetadata, RuntimeError,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let runtime = FakeRuntime::new();
//! let sandbox = PodSandboxConfig {
//!     metadata: PodSandboxMetadata {
//!         name: "web".into(), namespace: "default".into(), uid: "u1".into(), attempt: 0,
//!     },
//!     ..Default::default()
//! };
//! let sandbox_id = runtime.run_pod_sandbox(&sandbox).await?;
//! let config = ContainerConfig {
//!     metadata: ContainerMetadata { name: "app".into(), attempt: 0 },
//!     image: "hello:1".into(),
//!     ..Default::default()
//! };
//! let id = runtime.create_container(&sandbox_id, &config, &sandbox).await?;
//! runtime.start_container(&id).await?;
//! runtime.exit_container(&id, 1);
//! let status = runtime.container_status(&id).await?;
//! assert_eq!((status.state, status.exit_code), (ContainerState::Exited, Some(1)));
//!
//! runtime.fail_next(Operation::StartContainer, RuntimeError::Unavailable("down".into()));
//! let again = runtime.create_container(&sandbox_id, &ContainerConfig {
//!     metadata: ContainerMetadata { name: "app".into(), attempt: 1 },
//!     ..config
//! }, &sandbox).await?;
//! assert!(runtime.start_container(&again).await.is_err());
//! assert_eq!(runtime.calls_of(Operation::StartContainer).len(), 2);
//! # Ok::<(), RuntimeError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::broadcast;

use super::{
    ContainerConfig, ContainerFilter, ContainerRuntime, ContainerState, ContainerStatus,
    ExecResult, Image, ImageService, LogLine, LogLines, LogOptions, LogStream, ObjectKind,
    PodSandboxConfig, PodSandboxFilter, PodSandboxState, PodSandboxStatus, RuntimeError,
    RuntimeVersion,
};
use crate::clock::{Clock, SystemClock};

/// A runtime operation: what [`RuntimeCall`]s record and failures are injected by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// [`ContainerRuntime::version`].
    Version,
    /// [`ContainerRuntime::run_pod_sandbox`].
    RunPodSandbox,
    /// [`ContainerRuntime::stop_pod_sandbox`].
    StopPodSandbox,
    /// [`ContainerRuntime::remove_pod_sandbox`].
    RemovePodSandbox,
    /// [`ContainerRuntime::pod_sandbox_status`].
    PodSandboxStatus,
    /// [`ContainerRuntime::list_pod_sandboxes`].
    ListPodSandboxes,
    /// [`ContainerRuntime::create_container`].
    CreateContainer,
    /// [`ContainerRuntime::start_container`].
    StartContainer,
    /// [`ContainerRuntime::stop_container`].
    StopContainer,
    /// [`ContainerRuntime::remove_container`].
    RemoveContainer,
    /// [`ContainerRuntime::container_status`].
    ContainerStatus,
    /// [`ContainerRuntime::list_containers`].
    ListContainers,
    /// [`ContainerRuntime::container_logs`].
    ContainerLogs,
    /// [`ContainerRuntime::exec_sync`].
    ExecSync,
    /// [`ImageService::list_images`].
    ListImages,
    /// [`ImageService::image_status`].
    ImageStatus,
    /// [`ImageService::import_image`].
    ImportImage,
    /// [`ImageService::pull_image`].
    PullImage,
    /// [`ImageService::remove_image`].
    RemoveImage,
}

/// One call the fake received, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeCall {
    /// Which operation.
    pub operation: Operation,
    /// What it was about: the id of the sandbox, container or image; `namespace/name` of the
    /// pod for [`Operation::RunPodSandbox`]; the sandbox id for [`Operation::CreateContainer`];
    /// the archive's path for [`Operation::ImportImage`]; empty for the listings.
    pub target: String,
    /// The rest that matters: the container's name for [`Operation::CreateContainer`], the grace
    /// period for [`Operation::StopContainer`] (`Debug` of the duration), the command for
    /// [`Operation::ExecSync`] (joined with spaces); otherwise empty.
    pub detail: String,
}

/// How a test answers [`ContainerRuntime::exec_sync`]: given the container and the command.
pub type ExecHandler =
    Arc<dyn Fn(&ContainerStatus, &[String]) -> Result<ExecResult, RuntimeError> + Send + Sync>;

/// How many lines a following log reader may fall behind before it is told it lost some.
const FOLLOW_BUFFER: usize = 1024;

/// The exit code of a process ended by SIGTERM (128 + 15).
pub const EXIT_TERMINATED: i32 = 143;
/// The exit code of a process ended by SIGKILL (128 + 9).
pub const EXIT_KILLED: i32 = 137;

#[derive(Debug)]
struct Container {
    status: ContainerStatus,
    logs: Vec<LogLine>,
    /// Sends new lines to followers while the container runs; dropped when it ends, which ends
    /// their streams.
    follow: Option<broadcast::Sender<LogLine>>,
}

#[derive(Debug)]
struct Failure {
    operation: Operation,
    error: RuntimeError,
    /// `None`: every call; otherwise how many more calls fail.
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, PodSandboxStatus>,
    containers: BTreeMap<String, Container>,
    /// Images by id.
    images: BTreeMap<String, Image>,
    /// What importing each archive yields.
    archives: BTreeMap<PathBuf, Vec<Image>>,
    calls: Vec<RuntimeCall>,
    failures: Vec<Failure>,
    /// Names of containers whose process ignores SIGTERM.
    ignore_term: BTreeSet<String>,
    exec: Option<ExecHandler>,
    next_id: u64,
    next_pid: u32,
}

impl State {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}", self.next_id)
    }

    fn container(&self, id: &str) -> Result<&Container, RuntimeError> {
        self.containers
            .get(id)
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::Container, id))
    }

    /// Ends a running or created container with `exit_code`.
    fn finish(&mut self, id: &str, exit_code: i32, now: jiff::Timestamp) {
        if let Some(container) = self.containers.get_mut(id)
            && matches!(
                container.status.state,
                ContainerState::Running | ContainerState::Created
            )
        {
            let status = &mut container.status;
            status.state = ContainerState::Exited;
            status.finished_at = Some(now);
            status.exit_code = Some(exit_code);
            status.pid = None;
            status.reason = if exit_code == 0 { "Completed" } else { "Error" }.to_owned();
            container.follow = None;
        }
    }

    fn image_named(&self, image: &str) -> Option<&Image> {
        self.images.get(image).or_else(|| {
            self.images
                .values()
                .find(|candidate| candidate.repo_tags.iter().any(|tag| tag == image))
        })
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("sandboxes", &self.sandboxes.len())
            .field("containers", &self.containers.len())
            .field("images", &self.images.len())
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

/// An in-memory container runtime and image store for tests (see the [module](self)).
///
/// Clones share the same state.
#[derive(Clone, Debug)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl Default for FakeRuntime {
    fn default() -> FakeRuntime {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// An empty runtime with the system clock.
    pub fn new() -> FakeRuntime {
        FakeRuntime::with_clock(Arc::new(SystemClock))
    }

    /// An empty runtime whose timestamps come from `clock` (a
    /// [`TokioClock`](crate::clock::TokioClock) makes them follow paused time).
    pub fn with_clock(clock: Arc<dyn Clock>) -> FakeRuntime {
        FakeRuntime {
            state: Arc::new(Mutex::new(State::default())),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left consistent data: each change is
        // made whole under the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a call and applies an injected failure; the state, locked, to carry it out.
    fn begin(
        &self,
        operation: Operation,
        target: &str,
        detail: String,
    ) -> Result<MutexGuard<'_, State>, RuntimeError> {
        let mut state = self.lock();
        state.calls.push(RuntimeCall {
            operation,
            target: target.to_owned(),
            detail,
        });
        if let Some(index) = state
            .failures
            .iter()
            .position(|failure| failure.operation == operation)
        {
            let error = state.failures[index].error.clone();
            match &mut state.failures[index].remaining {
                None => {}
                Some(remaining) if *remaining > 1 => *remaining -= 1,
                Some(_) => {
                    state.failures.remove(index);
                }
            }
            return Err(error);
        }
        Ok(state)
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<RuntimeCall> {
        self.lock().calls.clone()
    }

    /// The calls of one operation, in order.
    pub fn calls_of(&self, operation: Operation) -> Vec<RuntimeCall> {
        self.lock()
            .calls
            .iter()
            .filter(|call| call.operation == operation)
            .cloned()
            .collect()
    }

    /// Makes the next call of `operation` fail with `error` (after the failures already queued
    /// for it).
    pub fn fail_next(&self, operation: Operation, error: RuntimeError) {
        self.lock().failures.push(Failure {
            operation,
            error,
            remaining: Some(1),
        });
    }

    /// Makes every call of `operation` fail with `error` until [`FakeRuntime::clear_failures`].
    pub fn fail_always(&self, operation: Operation, error: RuntimeError) {
        self.lock().failures.push(Failure {
            operation,
            error,
            remaining: None,
        });
    }

    /// Forgets every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// Plays a container's process ending by itself with `exit_code` (a crash, or a job done).
    /// Nothing happens to a container that does not run.
    pub fn exit_container(&self, id: &str, exit_code: i32) {
        let now = self.clock.now();
        self.lock().finish(id, exit_code, now);
    }

    /// Plays a running container writing a line to `stream`. Returns whether it runs (only a
    /// running container writes).
    pub fn write_log(&self, id: &str, stream: LogStream, content: impl Into<Bytes>) -> bool {
        let time = self.clock.now();
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(id) else {
            return false;
        };
        if container.status.state != ContainerState::Running {
            return false;
        }
        let line = LogLine {
            time,
            stream,
            content: content.into(),
        };
        if let Some(follow) = &container.follow {
            // No follower is not an error.
            let _ = follow.send(line.clone());
        }
        container.logs.push(line);
        true
    }

    /// Makes the processes of containers named `name` ignore SIGTERM: stopping one then takes
    /// its whole grace period and ends it with SIGKILL ([`EXIT_KILLED`]).
    pub fn ignore_term(&self, name: &str) {
        self.lock().ignore_term.insert(name.to_owned());
    }

    /// Answers [`ContainerRuntime::exec_sync`] with `handler` (by default every command exits 0
    /// with no output).
    pub fn set_exec(
        &self,
        handler: impl Fn(&ContainerStatus, &[String]) -> Result<ExecResult, RuntimeError>
        + Send
        + Sync
        + 'static,
    ) {
        self.lock().exec = Some(Arc::new(handler));
    }

    /// Puts an image in the store, as if imported.
    pub fn add_image(&self, image: Image) {
        self.lock().images.insert(image.id.clone(), image);
    }

    /// Says what importing the archive at `path` yields (the fake reads no file).
    pub fn stage_archive(&self, path: impl Into<PathBuf>, images: Vec<Image>) {
        self.lock().archives.insert(path.into(), images);
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let _state = self.begin(Operation::Version, "", String::new())?;
        Ok(RuntimeVersion {
            runtime_name: "fake".to_owned(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        let metadata = &config.metadata;
        let target = format!("{}/{}", metadata.namespace, metadata.name);
        let mut state = self.begin(Operation::RunPodSandbox, &target, String::new())?;
        for (field, value) in [
            ("metadata.name", &metadata.name),
            ("metadata.namespace", &metadata.namespace),
            ("metadata.uid", &metadata.uid),
        ] {
            if value.is_empty() {
                return Err(RuntimeError::InvalidArgument {
                    field: field.to_owned(),
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        let id = state.next_id("sandbox");
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: metadata.clone(),
            state: PodSandboxState::Ready,
            created_at: self.clock.now(),
            ips: config.ips.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        state.sandboxes.insert(id.clone(), status);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let mut state = self.begin(Operation::StopPodSandbox, id, String::new())?;
        let Some(sandbox) = state.sandboxes.get_mut(id) else {
            return Ok(());
        };
        sandbox.state = PodSandboxState::NotReady;
        let running: Vec<String> = state
            .containers
            .values()
            .filter(|c| c.status.pod_sandbox_id == id && c.status.state == ContainerState::Running)
            .map(|c| c.status.id.clone())
            .collect();
        for container in running {
            state.finish(&container, EXIT_KILLED, now);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.begin(Operation::RemovePodSandbox, id, String::new())?;
        state
            .containers
            .retain(|_, c| c.status.pod_sandbox_id != id);
        state.sandboxes.remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let state = self.begin(Operation::PodSandboxStatus, id, String::new())?;
        state
            .sandboxes
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::PodSandbox, id))
    }

    async fn list_pod_sandboxes(
        &self,
        filter: &PodSandboxFilter,
    ) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        let state = self.begin(Operation::ListPodSandboxes, "", String::new())?;
        Ok(state
            .sandboxes
            .values()
            .filter(|sandbox| filter.matches(sandbox))
            .cloned()
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let name = &config.metadata.name;
        let mut state = self.begin(Operation::CreateContainer, pod_sandbox_id, name.clone())?;
        let sandbox = state
            .sandboxes
            .get(pod_sandbox_id)
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::PodSandbox, pod_sandbox_id))?;
        if sandbox.state != PodSandboxState::Ready {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::PodSandbox,
                id: pod_sandbox_id.to_owned(),
                reason: "is not ready: no container can be created in it".to_owned(),
            });
        }
        for (field, value) in [("metadata.name", name), ("image", &config.image)] {
            if value.is_empty() {
                return Err(RuntimeError::InvalidArgument {
                    field: field.to_owned(),
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        if state.containers.values().any(|c| {
            c.status.pod_sandbox_id == pod_sandbox_id && c.status.metadata == config.metadata
        }) {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::PodSandbox,
                id: pod_sandbox_id.to_owned(),
                reason: format!(
                    "already has container {name:?} attempt {}",
                    config.metadata.attempt
                ),
            });
        }
        let id = state.next_id("container");
        let status = ContainerStatus {
            id: id.clone(),
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            metadata: config.metadata.clone(),
            state: ContainerState::Created,
            created_at: self.clock.now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            image: config.image.clone(),
            reason: String::new(),
            message: String::new(),
            log_path: config.log_path.clone(),
            pid: None,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        state.containers.insert(
            id.clone(),
            Container {
                status,
                logs: Vec::new(),
                follow: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let mut state = self.begin(Operation::StartContainer, id, String::new())?;
        let container = state.container(id)?;
        if container.status.state != ContainerState::Created {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::Container,
                id: id.to_owned(),
                reason: format!(
                    "is {:?}: only a created container starts",
                    container.status.state
                ),
            });
        }
        let sandbox = container.status.pod_sandbox_id.clone();
        if state
            .sandboxes
            .get(&sandbox)
            .is_none_or(|s| s.state != PodSandboxState::Ready)
        {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::Container,
                id: id.to_owned(),
                reason: format!("its pod sandbox {sandbox:?} is not ready"),
            });
        }
        state.next_pid += 1;
        let pid = state.next_pid;
        if let Some(container) = state.containers.get_mut(id) {
            container.status.state = ContainerState::Running;
            container.status.started_at = Some(now);
            container.status.pid = Some(pid);
            container.follow = Some(broadcast::channel(FOLLOW_BUFFER).0);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let ignores_term = {
            let state = self.begin(Operation::StopContainer, id, format!("{grace:?}"))?;
            match state.containers.get(id) {
                Some(c) if c.status.state == ContainerState::Running => {
                    state.ignore_term.contains(&c.status.metadata.name)
                }
                _ => return Ok(()),
            }
        };
        let exit_code = if ignores_term {
            tokio::time::sleep(grace).await;
            EXIT_KILLED
        } else {
            EXIT_TERMINATED
        };
        let now = self.clock.now();
        self.lock().finish(id, exit_code, now);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.begin(Operation::RemoveContainer, id, String::new())?;
        state.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let state = self.begin(Operation::ContainerStatus, id, String::new())?;
        Ok(state.container(id)?.status.clone())
    }

    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let state = self.begin(Operation::ListContainers, "", String::new())?;
        Ok(state
            .containers
            .values()
            .map(|c| &c.status)
            .filter(|status| filter.matches(status))
            .cloned()
            .collect())
    }

    async fn container_logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<LogLines, RuntimeError> {
        let state = self.begin(Operation::ContainerLogs, id, String::new())?;
        let container = state.container(id)?;
        let since: Vec<LogLine> = container
            .logs
            .iter()
            .filter(|line| options.since.is_none_or(|since| line.time >= since))
            .cloned()
            .collect();
        let skip = options
            .tail_lines
            .map_or(0, |tail| since.len().saturating_sub(tail));
        let backlog = stream::iter(since.into_iter().skip(skip).map(Ok));
        // Subscribed under the lock that writers take: no line is missed or sent twice.
        let follow = options
            .follow
            .then(|| container.follow.as_ref().map(broadcast::Sender::subscribe))
            .flatten();
        drop(state);
        let Some(receiver) = follow else {
            return Ok(backlog.boxed());
        };
        let new_lines = stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(line) => Some((Ok(line), receiver)),
                Err(broadcast::error::RecvError::Lagged(lost)) => Some((
                    Err(RuntimeError::Internal(format!(
                        "the log reader fell behind and lost {lost} lines"
                    ))),
                    receiver,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(backlog.chain(new_lines).boxed())
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let (status, handler) = {
            let state = self.begin(Operation::ExecSync, id, command.join(" "))?;
            let container = state.container(id)?;
            if container.status.state != ContainerState::Running {
                return Err(RuntimeError::FailedPrecondition {
                    kind: ObjectKind::Container,
                    id: id.to_owned(),
                    reason: "is not running: nothing to exec in".to_owned(),
                });
            }
            if command.is_empty() {
                return Err(RuntimeError::InvalidArgument {
                    field: "command".to_owned(),
                    reason: "must not be empty".to_owned(),
                });
            }
            (container.status.clone(), state.exec.clone())
        };
        match handler {
            Some(handler) => handler(&status, command),
            None => Ok(ExecResult::default()),
        }
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        let state = self.begin(Operation::ListImages, "", String::new())?;
        Ok(state.images.values().cloned().collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        let state = self.begin(Operation::ImageStatus, image, String::new())?;
        Ok(state.image_named(image).cloned())
    }

    async fn import_image(&self, archive: &Path) -> Result<Vec<Image>, RuntimeError> {
        let target = archive.display().to_string();
        let mut state = self.begin(Operation::ImportImage, &target, String::new())?;
        let images =
            state
                .archives
                .get(archive)
                .cloned()
                .ok_or_else(|| RuntimeError::InvalidArgument {
                    field: "archive".to_owned(),
                    reason: format!("{target}: no image archive there"),
                })?;
        for image in &images {
            state.images.insert(image.id.clone(), image.clone());
        }
        Ok(images)
    }

    async fn pull_image(&self, image: &str) -> Result<Image, RuntimeError> {
        let state = self.begin(Operation::PullImage, image, String::new())?;
        // No registry behind the fake: an image already in the store is "pulled".
        state
            .image_named(image)
            .cloned()
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::Image, image))
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let mut state = self.begin(Operation::RemoveImage, image, String::new())?;
        if let Some(id) = state.image_named(image).map(|found| found.id.clone()) {
            state.images.remove(&id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::container_runtime::{ContainerMetadata, PodSandboxMetadata};
    use tokio::time::Instant;

    fn runtime() -> FakeRuntime {
        let start = "2026-01-01T00:00:00Z".parse().unwrap_or_default();
        FakeRuntime::with_clock(Arc::new(TokioClock::starting_at(start)))
    }

    fn sandbox_config(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.to_owned(),
                namespace: "default".to_owned(),
                uid: format!("uid-{name}"),
                attempt: 0,
            },
            labels: BTreeMap::from([("pod".to_owned(), name.to_owned())]),
            ..PodSandboxConfig::default()
        }
    }

    fn container_config(name: &str, attempt: u32) -> ContainerConfig {
        ContainerConfig {
            metadata: ContainerMetadata {
                name: name.to_owned(),
                attempt,
            },
            image: "hello:1".to_owned(),
            labels: BTreeMap::from([("container".to_owned(), name.to_owned())]),
            ..ContainerConfig::default()
        }
    }

    /// A ready sandbox with one started container named `name`.
    async fn running(runtime: &FakeRuntime, name: &str) -> (String, String) {
        let sandbox = sandbox_config(name);
        let sandbox_id = runtime.run_pod_sandbox(&sandbox).await.unwrap();
        let id = runtime
            .create_container(&sandbox_id, &container_config(name, 0), &sandbox)
            .await
            .unwrap();
        runtime.start_container(&id).await.unwrap();
        (sandbox_id, id)
    }

    #[tokio::test(start_paused = true)]
    async fn containers_go_through_created_running_exited() {
        let runtime = runtime();
        let sandbox = sandbox_config("web");
        let sandbox_id = runtime.run_pod_sandbox(&sandbox).await.unwrap();
        let id = runtime
            .create_container(&sandbox_id, &container_config("app", 0), &sandbox)
            .await
            .unwrap();
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!(status.state, ContainerState::Created);
        assert_eq!((status.started_at, status.pid), (None, None));

        tokio::time::sleep(Duration::from_secs(5)).await;
        runtime.start_container(&id).await.unwrap();
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!(status.state, ContainerState::Running);
        assert_eq!(
            status.started_at.map(|t| t.to_string()),
            Some("2026-01-01T00:00:05Z".to_owned())
        );
        assert!(status.pid.is_some());
        let again = runtime.start_container(&id).await.unwrap_err();
        assert!(
            matches!(&again, RuntimeError::FailedPrecondition { kind: ObjectKind::Container, id: failed, .. } if *failed == id),
            "{again}"
        );

        runtime.exit_container(&id, 2);
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(
            (status.exit_code, status.reason.as_str(), status.pid),
            (Some(2), "Error", None)
        );
        // A clean exit is Completed; a container that does not run is left alone.
        let (_, other) = running(&runtime, "job").await;
        runtime.exit_container(&other, 0);
        runtime.exit_container(&other, 9);
        let status = runtime.container_status(&other).await.unwrap();
        assert_eq!(
            (status.exit_code, status.reason.as_str()),
            (Some(0), "Completed")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bad_requests_are_refused_with_the_field_or_object() {
        let runtime = runtime();
        let mut config = sandbox_config("web");
        config.metadata.uid.clear();
        assert_eq!(
            runtime.run_pod_sandbox(&config).await.unwrap_err(),
            RuntimeError::InvalidArgument {
                field: "metadata.uid".to_owned(),
                reason: "must not be empty".to_owned()
            }
        );
        let sandbox = sandbox_config("web");
        let missing = runtime
            .create_container("sandbox-nope", &container_config("app", 0), &sandbox)
            .await
            .unwrap_err();
        assert_eq!(
            missing,
            RuntimeError::not_found(ObjectKind::PodSandbox, "sandbox-nope")
        );
        assert_eq!(
            missing.to_string(),
            "pod sandbox \"sandbox-nope\" not found"
        );
        let sandbox_id = runtime.run_pod_sandbox(&sandbox).await.unwrap();
        let mut no_image = container_config("app", 0);
        no_image.image.clear();
        assert!(matches!(
            runtime.create_container(&sandbox_id, &no_image, &sandbox).await,
            Err(RuntimeError::InvalidArgument { field, .. }) if field == "image"
        ));
        runtime
            .create_container(&sandbox_id, &container_config("app", 0), &sandbox)
            .await
            .unwrap();
        // The same name and attempt twice in a sandbox: refused; the next attempt is fine.
        assert!(matches!(
            runtime
                .create_container(&sandbox_id, &container_config("app", 0), &sandbox)
                .await,
            Err(RuntimeError::FailedPrecondition { .. })
        ));
        runtime
            .create_container(&sandbox_id, &container_config("app", 1), &sandbox)
            .await
            .unwrap();
        assert!(
            runtime
                .container_status("container-nope")
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_and_removing_twice_or_after_the_fact_succeeds() {
        let runtime = runtime();
        let (sandbox_id, id) = running(&runtime, "web").await;
        runtime
            .stop_container(&id, Duration::from_secs(30))
            .await
            .unwrap();
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!(status.exit_code, Some(EXIT_TERMINATED));
        runtime
            .stop_container(&id, Duration::from_secs(30))
            .await
            .unwrap();
        runtime
            .stop_container("container-gone", Duration::ZERO)
            .await
            .unwrap();
        runtime.remove_container(&id).await.unwrap();
        runtime.remove_container(&id).await.unwrap();
        assert!(
            runtime
                .container_status(&id)
                .await
                .unwrap_err()
                .is_not_found()
        );

        // Stopping the sandbox kills what runs in it and lets nothing new start.
        let sandbox = sandbox_config("web");
        let second = runtime
            .create_container(&sandbox_id, &container_config("app", 1), &sandbox)
            .await
            .unwrap();
        let third = runtime
            .create_container(&sandbox_id, &container_config("side", 0), &sandbox)
            .await
            .unwrap();
        runtime.start_container(&second).await.unwrap();
        runtime.stop_pod_sandbox(&sandbox_id).await.unwrap();
        runtime.stop_pod_sandbox(&sandbox_id).await.unwrap();
        assert_eq!(
            runtime.container_status(&second).await.unwrap().exit_code,
            Some(EXIT_KILLED)
        );
        assert_eq!(
            runtime.pod_sandbox_status(&sandbox_id).await.unwrap().state,
            PodSandboxState::NotReady
        );
        assert!(matches!(
            runtime.start_container(&third).await,
            Err(RuntimeError::FailedPrecondition { .. })
        ));
        assert!(matches!(
            runtime
                .create_container(&sandbox_id, &container_config("late", 0), &sandbox)
                .await,
            Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::PodSandbox,
                ..
            })
        ));

        // Removing the sandbox removes its containers.
        runtime.remove_pod_sandbox(&sandbox_id).await.unwrap();
        runtime.remove_pod_sandbox(&sandbox_id).await.unwrap();
        runtime.stop_pod_sandbox(&sandbox_id).await.unwrap();
        assert!(
            runtime
                .container_status(&second)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            runtime
                .pod_sandbox_status(&sandbox_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
        let runtime = runtime();
        runtime.ignore_term("stubborn");
        let (_, stubborn) = running(&runtime, "stubborn").await;
        let (_, polite) = running(&runtime, "polite").await;

        let started = Instant::now();
        runtime
            .stop_container(&polite, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        runtime
            .stop_container(&stubborn, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let status = runtime.container_status(&stubborn).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code),
            (ContainerState::Exited, Some(EXIT_KILLED))
        );
        assert_eq!(
            status.finished_at.map(|t| t.to_string()),
            Some("2026-01-01T00:00:30Z".to_owned())
        );
        let grace = runtime.calls_of(Operation::StopContainer);
        assert_eq!(grace[1].target, stubborn);
        assert_eq!(grace[1].detail, "30s");
    }

    #[tokio::test(start_paused = true)]
    async fn listings_keep_what_passes_every_condition() {
        let runtime = runtime();
        let (web_sandbox, web) = running(&runtime, "web").await;
        let (db_sandbox, db) = running(&runtime, "db").await;
        runtime.exit_container(&db, 0);
        runtime.stop_pod_sandbox(&db_sandbox).await.unwrap();

        let ids = |list: Vec<ContainerStatus>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
        let all = ContainerFilter::default();
        assert_eq!(
            ids(runtime.list_containers(&all).await.unwrap()),
            [web.clone(), db.clone()]
        );
        let running_only = ContainerFilter {
            state: Some(ContainerState::Running),
            ..ContainerFilter::default()
        };
        assert_eq!(
            ids(runtime.list_containers(&running_only).await.unwrap()),
            vec![web.clone()]
        );
        let in_db = ContainerFilter {
            pod_sandbox_id: Some(db_sandbox.clone()),
            ..ContainerFilter::default()
        };
        assert_eq!(
            ids(runtime.list_containers(&in_db).await.unwrap()),
            vec![db.clone()]
        );
        let labelled = ContainerFilter {
            labels: BTreeMap::from([("container".to_owned(), "web".to_owned())]),
            state: Some(ContainerState::Exited),
            ..ContainerFilter::default()
        };
        assert!(runtime.list_containers(&labelled).await.unwrap().is_empty());

        let sandboxes = |filter: PodSandboxFilter| {
            let runtime = runtime.clone();
            async move {
                runtime
                    .list_pod_sandboxes(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            sandboxes(PodSandboxFilter {
                state: Some(PodSandboxState::Ready),
                ..PodSandboxFilter::default()
            })
            .await,
            vec![web_sandbox.clone()]
        );
        assert_eq!(
            sandboxes(PodSandboxFilter {
                labels: BTreeMap::from([("pod".to_owned(), "db".to_owned())]),
                ..PodSandboxFilter::default()
            })
            .await,
            vec![db_sandbox.clone()]
        );
        assert_eq!(
            sandboxes(PodSandboxFilter {
                id: Some(web_sandbox.clone()),
                state: Some(PodSandboxState::NotReady),
                ..PodSandboxFilter::default()
            })
            .await,
            Vec::<String>::new()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn injected_failures_fail_the_calls_asked_and_every_call_is_recorded() {
        let runtime = runtime();
        let down = RuntimeError::Unavailable("socket gone".to_owned());
        runtime.fail_next(Operation::RunPodSandbox, down.clone());
        assert_eq!(
            runtime
                .run_pod_sandbox(&sandbox_config("web"))
                .await
                .unwrap_err(),
            down
        );
        let (_, id) = running(&runtime, "web").await;
        runtime.fail_always(Operation::ContainerStatus, down.clone());
        for _ in 0..3 {
            assert_eq!(runtime.container_status(&id).await.unwrap_err(), down);
        }
        // Other operations are unaffected.
        runtime
            .list_containers(&ContainerFilter::default())
            .await
            .unwrap();
        runtime.clear_failures();
        runtime.container_status(&id).await.unwrap();

        let calls = runtime.calls();
        assert_eq!(calls[0].operation, Operation::RunPodSandbox);
        assert_eq!(calls[0].target, "default/web");
        assert_eq!(
            runtime
                .calls_of(Operation::CreateContainer)
                .iter()
                .map(|c| c.detail.as_str())
                .collect::<Vec<_>>(),
            ["web"]
        );
        assert_eq!(runtime.calls_of(Operation::ContainerStatus).len(), 4);
        assert_eq!(runtime.calls_of(Operation::RunPodSandbox).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_give_the_tail_since_a_time_and_follow_until_the_container_ends() {
        let runtime = runtime();
        let (_, id) = running(&runtime, "web").await;
        for n in 0..5 {
            assert!(runtime.write_log(&id, LogStream::Stdout, format!("line {n}")));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(runtime.write_log(&id, LogStream::Stderr, "oops"));
        let text = |lines: Vec<Result<LogLine, RuntimeError>>| {
            lines
                .into_iter()
                .map(|line| {
                    let line = line.unwrap();
                    String::from_utf8_lossy(&line.content).into_owned()
                })
                .collect::<Vec<_>>()
        };
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        let lines = runtime.container_logs(&id, &tail).await.unwrap();
        assert_eq!(text(lines.collect().await), ["line 4", "oops"]);
        let since = LogOptions {
            since: "2026-01-01T00:00:03Z".parse().ok(),
            ..LogOptions::default()
        };
        let lines = runtime.container_logs(&id, &since).await.unwrap();
        assert_eq!(text(lines.collect().await), ["line 3", "line 4", "oops"]);

        let follow = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        let mut lines = runtime.container_logs(&id, &follow).await.unwrap();
        let first = lines.next().await.unwrap().unwrap();
        assert_eq!(first.stream, LogStream::Stderr);
        assert!(runtime.write_log(&id, LogStream::Stdout, "later"));
        let later = lines.next().await.unwrap().unwrap();
        assert_eq!(later.content, Bytes::from("later"));
        runtime.exit_container(&id, 0);
        assert!(lines.next().await.is_none());
        assert!(!runtime.write_log(&id, LogStream::Stdout, "after the end"));
        assert!(
            runtime
                .container_logs("container-nope", &LogOptions::default())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exec_runs_only_in_running_containers_and_answers_as_told() {
        let runtime = runtime();
        let (_, id) = running(&runtime, "web").await;
        let probe = ["cat".to_owned(), "/tmp/healthy".to_owned()];
        let ok = runtime
            .exec_sync(&id, &probe, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(ok.exit_code, 0);
        runtime.set_exec(|container, command| {
            Ok(ExecResult {
                stdout: Bytes::from(format!("{} ran {}", container.metadata.name, command[0])),
                stderr: Bytes::new(),
                exit_code: 1,
            })
        });
        let answered = runtime
            .exec_sync(&id, &probe, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            (answered.stdout, answered.exit_code),
            (Bytes::from("web ran cat"), 1)
        );
        assert!(matches!(
            runtime.exec_sync(&id, &[], Duration::from_secs(1)).await,
            Err(RuntimeError::InvalidArgument { field, .. }) if field == "command"
        ));
        assert_eq!(
            runtime.calls_of(Operation::ExecSync)[0].detail,
            "cat /tmp/healthy"
        );
        runtime.exit_container(&id, 0);
        assert!(matches!(
            runtime.exec_sync(&id, &probe, Duration::from_secs(1)).await,
            Err(RuntimeError::FailedPrecondition { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn images_are_found_by_tag_or_id_imported_pulled_and_removed() {
        let runtime = runtime();
        let hello = Image {
            id: "sha256:aaa".to_owned(),
            repo_tags: vec!["hello:1".to_owned()],
            size_bytes: 1024,
        };
        runtime.stage_archive("/images/hello.tar", vec![hello.clone()]);
        assert_eq!(runtime.image_status("hello:1").await.unwrap(), None);
        assert!(
            runtime
                .pull_image("hello:1")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(
            runtime
                .import_image(Path::new("/images/hello.tar"))
                .await
                .unwrap(),
            vec![hello.clone()]
        );
        assert!(matches!(
            runtime.import_image(Path::new("/images/other.tar")).await,
            Err(RuntimeError::InvalidArgument { field, .. }) if field == "archive"
        ));
        assert_eq!(
            runtime.image_status("hello:1").await.unwrap(),
            Some(hello.clone())
        );
        assert_eq!(
            runtime.image_status("sha256:aaa").await.unwrap(),
            Some(hello.clone())
        );
        assert_eq!(runtime.pull_image("hello:1").await.unwrap(), hello);
        runtime.add_image(Image {
            id: "sha256:bbb".to_owned(),
            repo_tags: vec!["busybox:1".to_owned()],
            size_bytes: 1,
        });
        assert_eq!(runtime.list_images().await.unwrap().len(), 2);
        runtime.remove_image("hello:1").await.unwrap();
        runtime.remove_image("hello:1").await.unwrap();
        assert_eq!(
            runtime
                .list_images()
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>(),
            ["sha256:bbb"]
        );
        assert_eq!(
            runtime.calls_of(Operation::ImportImage)[0].target,
            "/images/hello.tar"
        );
    }
}
