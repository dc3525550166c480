//! The process runtime: containers as supervised host processes, with no root and no daemon.
//!
//! The runtime Orchestra embeds by default, in the spirit of rkt's "fly" stage: a pod sandbox is
//! bookkeeping (the pod's identity, addresses and log directory — the loopback pod network gives
//! each pod its own `127.x.y.z`), and each container is a host process started from the pod's
//! command, arguments, environment and working directory, in its own process group. Its output
//! goes to a log file in the CRI format ([`logs`]), which `kubectl logs` reads back.
//!
//! Everything the runtime knows is kept in its state directory, so a restarted node agent
//! constructs a [`ProcessRuntime`] over the same directory and finds its containers still
//! running: they are adopted (their output is picked up again, their end noticed), never
//! restarted or duplicated. See [`supervise`](self) for how a process's exit code outlives the
//! agent.
//!
//! A container with limits (its [`ContainerResources`]) gets a cgroup of its own when the
//! runtime runs as root on a host with cgroups ([`cgroup`]): its memory, CPU and process limits
//! hold, and a container the kernel kills for its memory ends `OOMKilled`. Elsewhere it runs
//! without them, and its status message says so.
//!
//! What it does not do yet: run from an image's root filesystem (images are not imported yet:
//! a container runs its command on the host filesystem, and one with no command is refused),
//! and `exec` into anything but the host (an exec runs the command with the container's
//! environment and working directory).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use orchestra_core::container_runtime::{
//!     ContainerConfig, ContainerMetadata, ContainerRuntime, ContainerState, LogOptions,
//!     PodSandboxConfig, PodSandboxMetadata,
//! };
//! use orchestra_runtime::process::ProcessRuntime;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let state = tempfile::tempdir()?;
//! let runtime = ProcessRuntime::open(state.path()).await?;
//! let sandbox = PodSandboxConfig {
//!     metadata: PodSandboxMetadata {
//!         name: "hello".into(), namespace: "default".into(), uid: "u1".into(), attempt: 0,
//!     },
//!     ..Default::default()
//! };
//! let sandbox_id = runtime.run_pod_sandbox(&sandbox).await?;
//! let container = ContainerConfig {
//!     metadata: ContainerMetadata { name: "greeter".into(), attempt: 0 },
//!     image: "host".into(),
//!     command: vec!["/bin/echo".into(), "hello".into()],
//!     ..Default::default()
//! };
//! let id = runtime.create_container(&sandbox_id, &container, &sandbox).await?;
//! runtime.start_container(&id).await?;
//! while runtime.container_status(&id).await?.state != ContainerState::Exited {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! // The output is in the log once the copy has caught up.
//! let mut lines = Vec::new();
//! while lines.is_empty() {
//!     lines = runtime.container_logs(&id, &LogOptions::default()).await?.collect().await;
//! }
//! let first = lines.remove(0)?;
//! assert_eq!(first.content, "hello");
//! # Ok(())
//! # }
//! ```

pub mod cgroup;
pub mod logs;
mod record;
mod supervise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use orchestra_core::clock::{Clock, SystemClock};
use orchestra_core::container_runtime::{
    ContainerConfig, ContainerFilter, ContainerResources, ContainerRuntime, ContainerStatus,
    ExecResult, LogLines, LogOptions, LogStream, ObjectKind, PodSandboxConfig, PodSandboxFilter,
    PodSandboxStatus, RuntimeError, RuntimeVersion,
};
use rustix::process::Signal;
use tokio::sync::watch;

use cgroup::{Cgroup, CgroupSupport};
use record::{ContainerRecord, Phase, SandboxRecord};
use supervise::ProcessFiles;

/// How large a container's log file grows before it is rotated (kubelet's
/// `containerLogMaxSize` default).
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How many log files a container keeps, the current one included (kubelet's
/// `containerLogMaxFiles` default).
pub const LOG_MAX_FILES: usize = 5;
/// How often an adopted process (not our child) is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// How a [`ProcessRuntime`] is set up, besides its state directory.
///
/// # Examples
///
/// ```
/// use orchestra_runtime::process::{ProcessRuntime, ProcessRuntimeOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let state = tempfile::tempdir()?;
/// let options = ProcessRuntimeOptions::default().without_cgroups();
/// let runtime = ProcessRuntime::open_with_options(state.path(), options).await?;
/// assert_eq!(runtime.cgroups().unavailable(), Some("turned off"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ProcessRuntimeOptions {
    clock: Arc<dyn Clock>,
    cgroup_parent: Option<PathBuf>,
}

impl Default for ProcessRuntimeOptions {
    /// The system clock, and containers' cgroups under [`cgroup::DEFAULT_PARENT`].
    fn default() -> ProcessRuntimeOptions {
        ProcessRuntimeOptions {
            clock: Arc::new(SystemClock),
            cgroup_parent: Some(PathBuf::from(cgroup::DEFAULT_PARENT)),
        }
    }
}

impl ProcessRuntimeOptions {
    /// Timestamps from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ProcessRuntimeOptions {
        self.clock = clock;
        self
    }

    /// Containers' cgroups under `parent` (relative to the root of each cgroup hierarchy;
    /// `orchestra` by default).
    #[must_use]
    pub fn with_cgroup_parent(mut self, parent: impl Into<PathBuf>) -> ProcessRuntimeOptions {
        self.cgroup_parent = Some(parent.into());
        self
    }

    /// No cgroups: containers run without their limits.
    #[must_use]
    pub fn without_cgroups(mut self) -> ProcessRuntimeOptions {
        self.cgroup_parent = None;
        self
    }
}

/// The process runtime (see the [module](self)). Clones share the same runtime.
#[derive(Clone, Debug)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    cgroups: CgroupSupport,
    state: Mutex<State>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    sandboxes: BTreeMap<String, SandboxRecord>,
    containers: BTreeMap<String, Container>,
}

#[derive(Debug)]
struct Container {
    record: ContainerRecord,
    /// Turns true once the process has ended and its end is recorded.
    ended: Option<watch::Receiver<bool>>,
}

fn internal(context: &str, error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Internal(format!("{context}: {error}"))
}

fn invalid(field: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidArgument {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl ProcessRuntime {
    /// The runtime keeping its state in `root` (created if missing), with the system clock.
    /// Containers a previous runtime left running there are adopted. Containers with limits get
    /// cgroups under [`cgroup::DEFAULT_PARENT`] where the runtime can make them (see
    /// [`ProcessRuntime::cgroups`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unavailable`] when the directory cannot be created or read.
    pub async fn open(root: impl Into<PathBuf>) -> Result<ProcessRuntime, RuntimeError> {
        ProcessRuntime::open_with_clock(root, Arc::new(SystemClock)).await
    }

    /// As [`ProcessRuntime::open`], with timestamps from `clock`.
    ///
    /// # Errors
    ///
    /// As [`ProcessRuntime::open`].
    pub async fn open_with_clock(
        root: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Result<ProcessRuntime, RuntimeError> {
        ProcessRuntime::open_with_options(root, ProcessRuntimeOptions::default().with_clock(clock))
            .await
    }

    /// As [`ProcessRuntime::open`], set up as `options` say.
    ///
    /// # Errors
    ///
    /// As [`ProcessRuntime::open`].
    pub async fn open_with_options(
        root: impl Into<PathBuf>,
        options: ProcessRuntimeOptions,
    ) -> Result<ProcessRuntime, RuntimeError> {
        let ProcessRuntimeOptions {
            clock,
            cgroup_parent,
        } = options;
        let root = root.into();
        let unavailable = |error: std::io::Error| {
            RuntimeError::Unavailable(format!("{}: {error}", root.display()))
        };
        for directory in ["sandboxes", "containers", "logs"] {
            std::fs::create_dir_all(root.join(directory)).map_err(unavailable)?;
        }
        let (sandboxes, bad_sandboxes) =
            record::load_all::<SandboxRecord>(&root.join("sandboxes")).map_err(unavailable)?;
        let (containers, bad_containers) =
            record::load_all::<ContainerRecord>(&root.join("containers")).map_err(unavailable)?;
        if let Some((path, error)) = bad_sandboxes.iter().chain(&bad_containers).next() {
            // A damaged record is left in place for a person to look at, never overwritten.
            return Err(RuntimeError::Unavailable(format!(
                "unreadable runtime record {}: {error}",
                path.display()
            )));
        }
        let cgroups = match cgroup_parent {
            Some(parent) => CgroupSupport::probe(&parent),
            None => CgroupSupport::Unavailable("turned off".to_owned()),
        };
        let runtime = ProcessRuntime {
            inner: Arc::new(Inner {
                root,
                clock,
                cgroups,
                state: Mutex::new(State::default()),
                next_id: AtomicU64::new(0),
            }),
        };
        let mut adopted = Vec::new();
        {
            let mut state = runtime.lock();
            for sandbox in sandboxes {
                state.sandboxes.insert(sandbox.id.clone(), sandbox);
            }
            for record in containers {
                if record.phase == Phase::Running {
                    adopted.push(record.id.clone());
                }
                state.containers.insert(
                    record.id.clone(),
                    Container {
                        record,
                        ended: None,
                    },
                );
            }
        }
        for id in adopted {
            runtime.adopt(&id)?;
        }
        Ok(runtime)
    }

    /// Whether containers get cgroups (for their limits), and where.
    pub fn cgroups(&self) -> &CgroupSupport {
        &self.inner.cgroups
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is made whole under the lock; a panic elsewhere leaves it consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_id(&self) -> String {
        let count = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = self.inner.clock.now().as_nanosecond();
        format!("{:x}{:04x}", nanos.unsigned_abs(), count & 0xffff)
    }

    fn sandbox_path(&self, id: &str) -> PathBuf {
        self.inner.root.join("sandboxes").join(format!("{id}.json"))
    }

    fn container_path(&self, id: &str) -> PathBuf {
        self.inner
            .root
            .join("containers")
            .join(format!("{id}.json"))
    }

    fn container_files(&self, id: &str) -> ProcessFiles {
        ProcessFiles::in_directory(&self.inner.root.join("containers").join(id))
    }

    fn save_sandbox(&self, record: &SandboxRecord) -> Result<(), RuntimeError> {
        record::save(&self.sandbox_path(&record.id), record)
            .map_err(|error| internal("saving the sandbox record", error))
    }

    fn save_container(&self, record: &ContainerRecord) -> Result<(), RuntimeError> {
        record::save(&self.container_path(&record.id), record)
            .map_err(|error| internal("saving the container record", error))
    }

    /// Picks up a container left running by a previous runtime: copies its output again and
    /// watches for its end (or records it, if it ended meanwhile).
    fn adopt(&self, id: &str) -> Result<(), RuntimeError> {
        let (pid, start, log_path) = {
            let state = self.lock();
            let Some(container) = state.containers.get(id) else {
                return Ok(());
            };
            let record = &container.record;
            (record.pid, record.process_start, record.log_path.clone())
        };
        let alive = pid.is_some_and(|pid| supervise::is_alive(pid, start));
        let (ended_tx, ended_rx) = watch::channel(false);
        if let Some(container) = self.lock().containers.get_mut(id) {
            container.ended = Some(ended_rx);
        }
        if !alive {
            self.record_exit(id, None);
            let _ = ended_tx.send(true);
            return Ok(());
        }
        self.start_log_pumps(id, &log_path)?;
        let runtime = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            while pid.is_some_and(|pid| supervise::is_alive(pid, start)) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            runtime.record_exit(&id, None);
            let _ = ended_tx.send(true);
        });
        Ok(())
    }

    /// Copies the container's stdout and stderr FIFOs into its log file, until the process ends.
    fn start_log_pumps(&self, id: &str, log_path: &Path) -> Result<(), RuntimeError> {
        let files = self.container_files(id);
        let log_path = log_path.to_owned();
        let clock = self.inner.clock.clone();
        let open = |path: &Path| {
            tokio::net::unix::pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|error| internal(&format!("opening {}", path.display()), error))
        };
        let stdout = open(&files.stdout)?;
        let stderr = open(&files.stderr)?;
        tokio::spawn(async move {
            let writer = match logs::LogWriter::open(&log_path, LOG_MAX_BYTES, LOG_MAX_FILES).await
            {
                Ok(writer) => Arc::new(tokio::sync::Mutex::new(writer)),
                Err(error) => {
                    eprintln!(
                        "orchestra process runtime: cannot open {}: {error}",
                        log_path.display()
                    );
                    return;
                }
            };
            let (out, err) = tokio::join!(
                logs::pump(stdout, LogStream::Stdout, writer.clone(), clock.clone()),
                logs::pump(stderr, LogStream::Stderr, writer, clock),
            );
            for result in [out, err] {
                if let Err(error) = result {
                    eprintln!(
                        "orchestra process runtime: copying the output to {}: {error}",
                        log_path.display()
                    );
                }
            }
        });
        Ok(())
    }

    /// Records that the container's process ended: with `exit_code` when we waited for it,
    /// otherwise what the shim wrote (or, if it was killed before writing, SIGKILL's code).
    fn record_exit(&self, id: &str, exit_code: Option<i32>) {
        let files = self.container_files(id);
        let code = exit_code
            .or_else(|| files.recorded_exit_code())
            .unwrap_or(EXIT_KILLED);
        let now = self.inner.clock.now();
        let cgroup = self
            .lock()
            .containers
            .get(id)
            .and_then(|container| container.record.cgroup.clone());
        let oom_killed = cgroup.as_ref().is_some_and(|cgroup| {
            let killed = cgroup.oom_kills().is_ok_and(|kills| kills > 0);
            // Emptied, the cgroup has served; one that something left running in holds until
            // the container is removed.
            let _ = cgroup.remove();
            killed
        });
        let record = {
            let mut state = self.lock();
            let Some(container) = state.containers.get_mut(id) else {
                return;
            };
            let record = &mut container.record;
            if record.phase != Phase::Running {
                return;
            }
            record.phase = Phase::Exited;
            record.exit_code = Some(code);
            record.finished_at = Some(now);
            record.pid = None;
            record.process_start = None;
            record.reason = if oom_killed {
                "OOMKilled"
            } else if code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned();
            record.clone()
        };
        if let Err(error) = self.save_container(&record) {
            eprintln!("orchestra process runtime: {error}");
        }
    }

    /// Waits until the container's process has ended and its end is recorded, at most `limit`.
    /// Returns whether it ended.
    async fn wait_ended(&self, id: &str, limit: Duration) -> bool {
        let ended = self
            .lock()
            .containers
            .get(id)
            .and_then(|container| container.ended.clone());
        let Some(mut ended) = ended else {
            return true;
        };
        tokio::time::timeout(limit, ended.wait_for(|ended| *ended))
            .await
            .is_ok()
    }

    /// Kills the running containers matching `which` (SIGKILL to their groups) and waits for
    /// their ends to be recorded.
    async fn kill_where(&self, which: impl Fn(&ContainerRecord) -> bool) {
        let running: Vec<(String, Option<u32>)> = self
            .lock()
            .containers
            .values()
            .filter(|c| c.record.phase == Phase::Running && which(&c.record))
            .map(|c| (c.record.id.clone(), c.record.pid))
            .collect();
        for (id, pid) in running {
            if let Some(pid) = pid {
                let _ = supervise::signal_group(pid, Signal::KILL);
            }
            self.wait_ended(&id, Duration::from_secs(10)).await;
        }
    }
}

/// Removes a container's cgroup, killing what is left in it (a process that left the
/// container's process group), waiting a little for the kernel to let go of it.
async fn remove_cgroup(cgroup: &Cgroup) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let _ = cgroup.kill_all();
        match cgroup.remove() {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(internal("removing the container's cgroup", error));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The exit code of a process ended by SIGKILL (128 + 9).
pub const EXIT_KILLED: i32 = 137;

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        Ok(RuntimeVersion {
            runtime_name: "process".to_owned(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        let metadata = &config.metadata;
        for (field, value) in [
            ("metadata.name", &metadata.name),
            ("metadata.namespace", &metadata.namespace),
            ("metadata.uid", &metadata.uid),
        ] {
            if value.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
        }
        let id = self.new_id();
        let record = SandboxRecord {
            id: id.clone(),
            name: metadata.name.clone(),
            namespace: metadata.namespace.clone(),
            uid: metadata.uid.clone(),
            attempt: metadata.attempt,
            ready: true,
            created_at: self.inner.clock.now(),
            ips: config.ips.clone(),
            hostname: config.hostname.clone(),
            log_directory: config.log_directory.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        self.save_sandbox(&record)?;
        self.lock().sandboxes.insert(id.clone(), record);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.kill_where(|record| record.sandbox_id == id).await;
        let record = {
            let mut state = self.lock();
            let Some(sandbox) = state.sandboxes.get_mut(id) else {
                return Ok(());
            };
            sandbox.ready = false;
            sandbox.clone()
        };
        self.save_sandbox(&record)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.stop_pod_sandbox(id).await?;
        let containers: Vec<String> = self
            .lock()
            .containers
            .values()
            .filter(|c| c.record.sandbox_id == id)
            .map(|c| c.record.id.clone())
            .collect();
        for container in containers {
            self.remove_container(&container).await?;
        }
        if self.lock().sandboxes.remove(id).is_some() {
            let _ = std::fs::remove_file(self.sandbox_path(id));
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        self.lock()
            .sandboxes
            .get(id)
            .map(SandboxRecord::status)
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::PodSandbox, id))
    }

    async fn list_pod_sandboxes(
        &self,
        filter: &PodSandboxFilter,
    ) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        Ok(self
            .lock()
            .sandboxes
            .values()
            .map(SandboxRecord::status)
            .filter(|status| filter.matches(status))
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let name = &config.metadata.name;
        if name.is_empty() {
            return Err(invalid("metadata.name", "must not be empty"));
        }
        let argv: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
        if config.command.is_empty() {
            return Err(invalid(
                "command",
                format!(
                    "the process runtime runs the command on the host and has no image store \
                     to take {:?}'s entrypoint from: the container must give a command",
                    config.image
                ),
            ));
        }
        if let Some(directory) = &config.working_dir
            && !directory.is_absolute()
        {
            return Err(invalid(
                "working_dir",
                format!("{} is not an absolute path", directory.display()),
            ));
        }
        let id = self.new_id();
        let mut record = {
            let state = self.lock();
            let sandbox = state
                .sandboxes
                .get(pod_sandbox_id)
                .ok_or_else(|| RuntimeError::not_found(ObjectKind::PodSandbox, pod_sandbox_id))?;
            if !sandbox.ready {
                return Err(RuntimeError::FailedPrecondition {
                    kind: ObjectKind::PodSandbox,
                    id: pod_sandbox_id.to_owned(),
                    reason: "is not ready: no container can be created in it".to_owned(),
                });
            }
            if state.containers.values().any(|c| {
                c.record.sandbox_id == pod_sandbox_id
                    && c.record.name == *name
                    && c.record.attempt == config.metadata.attempt
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
            let log_directory = sandbox
                .log_directory
                .clone()
                .unwrap_or_else(|| self.inner.root.join("logs").join(pod_sandbox_id));
            let log_path = match &config.log_path {
                Some(path) => log_directory.join(path),
                None => log_directory.join(format!("{name}/{}.log", config.metadata.attempt)),
            };
            ContainerRecord {
                id: id.clone(),
                sandbox_id: pod_sandbox_id.to_owned(),
                name: name.clone(),
                attempt: config.metadata.attempt,
                image: config.image.clone(),
                argv,
                working_dir: config.working_dir.clone(),
                env: config.env.clone(),
                log_path,
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                phase: Phase::Created,
                created_at: self.inner.clock.now(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                pid: None,
                process_start: None,
                reason: String::new(),
                message: String::new(),
                cgroup: None,
            }
        };
        std::fs::create_dir_all(self.inner.root.join("containers").join(&id))
            .map_err(|error| internal("creating the container's directory", error))?;
        if config.resources != ContainerResources::default() {
            match &self.inner.cgroups {
                CgroupSupport::Available { hierarchy, parent } => {
                    let cgroup = hierarchy
                        .create(&parent.join(&id), &config.resources)
                        .map_err(|error| internal("making the container's cgroup", error))?;
                    record.cgroup = Some(cgroup);
                }
                CgroupSupport::Unavailable(why) => {
                    record.message = format!("resource limits not applied: {why}");
                }
            }
        }
        if let Err(error) = self.save_container(&record) {
            if let Some(cgroup) = &record.cgroup {
                let _ = cgroup.remove();
            }
            return Err(error);
        }
        self.lock().containers.insert(
            id.clone(),
            Container {
                record,
                ended: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let record = {
            let state = self.lock();
            let container = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::not_found(ObjectKind::Container, id))?;
            if container.record.phase != Phase::Created {
                return Err(RuntimeError::FailedPrecondition {
                    kind: ObjectKind::Container,
                    id: id.to_owned(),
                    reason: format!(
                        "is {:?}: only a created container starts",
                        container.record.phase
                    ),
                });
            }
            if !state
                .sandboxes
                .get(&container.record.sandbox_id)
                .is_some_and(|sandbox| sandbox.ready)
            {
                return Err(RuntimeError::FailedPrecondition {
                    kind: ObjectKind::Container,
                    id: id.to_owned(),
                    reason: format!(
                        "its pod sandbox {:?} is not ready",
                        container.record.sandbox_id
                    ),
                });
            }
            container.record.clone()
        };
        if let Some(parent) = record.log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| internal("creating the log directory", error))?;
        }
        let files = self.container_files(id);
        let mut child = supervise::spawn(
            &record.argv,
            &record.env,
            record.working_dir.as_deref(),
            &files,
            record.cgroup.is_some(),
        )
        .map_err(|error| internal(&format!("starting {:?}", record.argv), error))?;
        let pid = child.id();
        if let Some(cgroup) = &record.cgroup {
            // The shim waits at its gate: into the cgroup before it runs the command.
            let placed = match pid {
                Some(pid) => cgroup.add_process(pid).map_err(|error| error.to_string()),
                None => Err("the process ended at once".to_owned()),
            };
            if let Err(error) = placed {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(internal("placing the container in its cgroup", error));
            }
        }
        supervise::open_gate(&mut child);
        let (ended_tx, ended_rx) = watch::channel(false);
        let started = {
            let mut state = self.lock();
            let Some(container) = state.containers.get_mut(id) else {
                return Err(RuntimeError::not_found(ObjectKind::Container, id));
            };
            let record = &mut container.record;
            record.phase = Phase::Running;
            record.started_at = Some(self.inner.clock.now());
            record.pid = pid;
            record.process_start = pid.and_then(supervise::process_start);
            container.ended = Some(ended_rx);
            record.clone()
        };
        self.save_container(&started)?;
        self.start_log_pumps(id, &started.log_path)?;
        let runtime = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => status.code().or_else(|| {
                    std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s)
                }),
                Err(_) => None,
            };
            runtime.record_exit(&id, code);
            let _ = ended_tx.send(true);
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let pid = {
            let state = self.lock();
            match state.containers.get(id) {
                Some(c) if c.record.phase == Phase::Running => c.record.pid,
                _ => return Ok(()),
            }
        };
        let Some(pid) = pid else {
            return Ok(());
        };
        supervise::signal_group(pid, Signal::TERM)
            .map_err(|error| internal("sending SIGTERM", error))?;
        if self.wait_ended(id, grace).await {
            return Ok(());
        }
        supervise::signal_group(pid, Signal::KILL)
            .map_err(|error| internal("sending SIGKILL", error))?;
        if self.wait_ended(id, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(RuntimeError::Timeout {
                operation: format!("stopping container {id}"),
                after: grace + Duration::from_secs(10),
            })
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.kill_where(|record| record.id == id).await;
        let cgroup = self
            .lock()
            .containers
            .get(id)
            .and_then(|container| container.record.cgroup.clone());
        if let Some(cgroup) = cgroup {
            remove_cgroup(&cgroup).await?;
        }
        if self.lock().containers.remove(id).is_some() {
            let _ = std::fs::remove_file(self.container_path(id));
            let _ = std::fs::remove_dir_all(self.inner.root.join("containers").join(id));
        }
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.lock()
            .containers
            .get(id)
            .map(|c| c.record.status())
            .ok_or_else(|| RuntimeError::not_found(ObjectKind::Container, id))
    }

    async fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .values()
            .map(|c| c.record.status())
            .filter(|status| filter.matches(status))
            .collect())
    }

    async fn container_logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<LogLines, RuntimeError> {
        let (log_path, ended) = {
            let state = self.lock();
            let container = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::not_found(ObjectKind::Container, id))?;
            (container.record.log_path.clone(), container.ended.clone())
        };
        if options.follow {
            let running = move || ended.as_ref().is_some_and(|ended| !*ended.borrow());
            return Ok(logs::follow(log_path, options.clone(), running));
        }
        let lines = logs::read(&log_path, options)
            .await
            .map_err(|error| internal(&format!("reading {}", log_path.display()), error))?;
        Ok(Box::pin(futures_util::stream::iter(
            lines.into_iter().map(Ok),
        )))
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let record = {
            let state = self.lock();
            let container = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::not_found(ObjectKind::Container, id))?;
            if container.record.phase != Phase::Running {
                return Err(RuntimeError::FailedPrecondition {
                    kind: ObjectKind::Container,
                    id: id.to_owned(),
                    reason: "is not running: nothing to exec in".to_owned(),
                });
            }
            container.record.clone()
        };
        let Some((program, arguments)) = command.split_first() else {
            return Err(invalid("command", "must not be empty"));
        };
        let mut process = tokio::process::Command::new(program);
        process
            .args(arguments)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if !record.env.iter().any(|(name, _)| name == "PATH") {
            process.env("PATH", supervise::DEFAULT_PATH);
        }
        process.envs(record.env.iter().map(|(name, value)| (name, value)));
        if let Some(directory) = &record.working_dir {
            process.current_dir(directory);
        }
        let output = match tokio::time::timeout(timeout, process.output()).await {
            Err(_) => {
                return Err(RuntimeError::Timeout {
                    operation: format!("exec {command:?} in container {id}"),
                    after: timeout,
                });
            }
            Ok(Err(error)) => {
                // A command that cannot be run fails like one that ran and failed, as in a
                // container (exit code 126 for "cannot execute", 127 for "not found").
                let code = if error.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                return Ok(ExecResult {
                    stdout: Bytes::new(),
                    stderr: Bytes::from(format!("{program}: {error}\n")),
                    exit_code: code,
                });
            }
            Ok(Ok(output)) => output,
        };
        let exit_code = output.status.code().unwrap_or_else(|| {
            std::os::unix::process::ExitStatusExt::signal(&output.status).map_or(1, |s| 128 + s)
        });
        Ok(ExecResult {
            stdout: Bytes::from(output.stdout),
            stderr: Bytes::from(output.stderr),
            exit_code,
        })
    }
}
