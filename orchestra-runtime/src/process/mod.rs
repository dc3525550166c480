//! The process runtime: containers as supervised processes, with no daemon.
//!
//! The runtime Orchestra embeds by default, in the spirit of rkt's "fly" stage: a pod sandbox is
//! bookkeeping (the pod's identity, addresses and log directory — the loopback pod network gives
//! each pod its own `127.x.y.z`), and each container is a process in its own process group. Its
//! output goes to a log file in the CRI format ([`logs`]), which `kubectl logs` reads back.
//!
//! # What a container runs, and where
//!
//! The container's image says. The runtime keeps an [`ImageStore`] — its own in the state
//! directory's [`IMAGES_DIRECTORY`], or the node's
//! ([`ProcessRuntimeOptions::with_image_store`]) — and serves it as CRI's [`ImageService`], so
//! one [`ProcessRuntime`] is both of CRI's services.
//!
//! - An image **in the store** runs from its root filesystem: the image's entrypoint, command,
//!   environment, working directory and user, as the container's `command`, `args`, `env` and
//!   `workingDir` override them by Kubernetes' rules
//!   ([`ImageConfig::process`](crate::image::ImageConfig::process)). As root, the process is
//!   chrooted into an overlay of the image of its own — its writes stay its own — with a fresh
//!   `/proc`, a minimal `/dev` and the host's `/etc/hosts` and `/etc/resolv.conf`, and runs as
//!   the image's user; if the overlay cannot be mounted it is chrooted into the image's shared
//!   root filesystem. Not as root (or [`without_chroot`](ProcessRuntimeOptions::without_chroot)),
//!   it runs from the image's files without a chroot, as the runtime's user. An image that a
//!   container runs from is not removed until the container is.
//! - An image **not in the store** (`host`, or one never imported) means the container's
//!   command runs on the host's filesystem, with the container's environment and working
//!   directory, as the runtime's user; such a container must give a command.
//!
//! Each container's status says which, for the node agent's events: the annotations
//! [`ROOTFS_ANNOTATION`](orchestra_core::container_runtime::ROOTFS_ANNOTATION) (`image` or
//! `host`), [`ROOTFS_DETAIL_ANNOTATION`](orchestra_core::container_runtime::ROOTFS_DETAIL_ANNOTATION)
//! (a phrase for people, such as `from image docker.io/library/busybox:latest's root
//! filesystem, chrooted`) and, from an image,
//! [`IMAGE_ID_ANNOTATION`](orchestra_core::container_runtime::IMAGE_ID_ANNOTATION); its `image`
//! is then the image's normalised reference, and its message tells what was not done (no
//! chroot, no overlay, no limits).
//!
//! There is no isolation beyond that: no namespaces, so containers share the host's network,
//! processes and mount table (the overlays and their `/proc` and `/dev` are mounted under the
//! state directory, and unmounted when the container is removed); a chroot keeps a process to
//! the image's files, not a process running as root (which can leave it); and no `mounts`
//! (volumes) are made.
//!
//! # Restarts, limits, exec
//!
//! Everything the runtime knows is kept in its state directory, so a restarted node agent
//! constructs a [`ProcessRuntime`] over the same directory and finds its containers still
//! running: they are adopted (their output is picked up again, their end noticed), never
//! restarted or duplicated, and removing them unmounts what the earlier runtime mounted. See
//! [`supervise`](self) for how a process's exit code outlives the agent.
//!
//! A container with limits (its [`ContainerResources`]) gets a cgroup of its own when the
//! runtime runs as root on a host with cgroups ([`cgroup`]): its memory, CPU and process limits
//! hold, and a container the kernel kills for its memory ends `OOMKilled`. Elsewhere it runs
//! without them, and its status message says so.
//!
//! An `exec` (exec probes) runs where the container's process runs: chrooted into its root as
//! its user, from its image's files, or on the host, with the container's environment and
//! working directory.
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
mod rootfs;
mod supervise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use orchestra_core::clock::{Clock, SystemClock};
use orchestra_core::container_runtime::{
    ContainerConfig, ContainerFilter, ContainerResources, ContainerRuntime, ContainerStatus,
    ExecResult, Image, ImageService, LogLines, LogOptions, LogStream, ObjectKind, PodSandboxConfig,
    PodSandboxFilter, PodSandboxStatus, RuntimeError, RuntimeVersion,
};
use rustix::process::Signal;
use tokio::sync::watch;

use crate::image::{ImageStore, Reference, image_id, resolve_user};
use cgroup::{Cgroup, CgroupSupport};
use record::{ContainerRecord, Phase, SandboxRecord};
use rootfs::{Chroot, Filesystem, ImageRoot};
use supervise::ProcessFiles;

/// How large a container's log file grows before it is rotated (kubelet's
/// `containerLogMaxSize` default).
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How many log files a container keeps, the current one included (kubelet's
/// `containerLogMaxFiles` default).
pub const LOG_MAX_FILES: usize = 5;
/// How often an adopted process (not our child) is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
/// The image store's directory under the runtime's state directory, unless another store is
/// given ([`ProcessRuntimeOptions::with_image_store`]).
pub const IMAGES_DIRECTORY: &str = "images";

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
    images: Option<ImageStore>,
    chroot: bool,
}

impl Default for ProcessRuntimeOptions {
    /// The system clock, containers' cgroups under [`cgroup::DEFAULT_PARENT`], and an image
    /// store in the state directory's [`IMAGES_DIRECTORY`].
    fn default() -> ProcessRuntimeOptions {
        ProcessRuntimeOptions {
            clock: Arc::new(SystemClock),
            cgroup_parent: Some(PathBuf::from(cgroup::DEFAULT_PARENT)),
            images: None,
            chroot: true,
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

    /// Containers' images from `store` (the node's, shared with whatever else imports images),
    /// rather than from a store of the runtime's own in its state directory's
    /// [`IMAGES_DIRECTORY`].
    #[must_use]
    pub fn with_image_store(mut self, store: ImageStore) -> ProcessRuntimeOptions {
        self.images = Some(store);
        self
    }

    /// No chroot: containers of images run from the image's files with the host's root
    /// directory, even when the runtime runs as root (as they always do when it does not).
    #[must_use]
    pub fn without_chroot(mut self) -> ProcessRuntimeOptions {
        self.chroot = false;
        self
    }
}

/// The process runtime (see the [module](self)): CRI's `RuntimeService`
/// ([`ContainerRuntime`]) and, through its image store, its `ImageService` ([`ImageService`]).
/// Clones share the same runtime.
#[derive(Clone, Debug)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    cgroups: CgroupSupport,
    images: ImageStore,
    /// Whether containers of images are chrooted when the runtime runs as root.
    chroot: bool,
    /// util-linux's `setpriv` and `unshare`, once looked for (a chroot needs them).
    chroot_tools: OnceLock<Result<(PathBuf, PathBuf), String>>,
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
    /// [`ProcessRuntime::cgroups`]). Images are kept in an image store in `root`'s
    /// [`IMAGES_DIRECTORY`] (see [`ProcessRuntime::images`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unavailable`] when the directory cannot be created or read, or the image
    /// store there cannot be opened.
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
            images,
            chroot,
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
        let images = match images {
            Some(images) => images,
            None => ImageStore::open(root.join(IMAGES_DIRECTORY)).map_err(|error| {
                RuntimeError::Unavailable(format!("the runtime's image store: {error}"))
            })?,
        };
        let runtime = ProcessRuntime {
            inner: Arc::new(Inner {
                root,
                clock,
                cgroups,
                images,
                chroot,
                chroot_tools: OnceLock::new(),
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

    /// The image store containers' images are looked for in (the runtime's [`ImageService`]
    /// serves it too).
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
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

    fn container_directory(&self, id: &str) -> PathBuf {
        self.inner.root.join("containers").join(id)
    }

    fn container_files(&self, id: &str) -> ProcessFiles {
        ProcessFiles::in_directory(&self.container_directory(id))
    }

    /// Where a container's overlay (`upper`, `work`, `merged`) is mounted.
    fn container_rootfs(&self, id: &str) -> PathBuf {
        self.container_directory(id).join("rootfs")
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

    /// What `config` runs and on which filesystem: its image's process from the image's root
    /// filesystem when the node's image store has the image, its own command on the host's
    /// filesystem otherwise (see [`rootfs`]).
    fn plan(&self, config: &ContainerConfig) -> Result<Plan, RuntimeError> {
        let reason = match self.inner.images.resolve(&config.image) {
            Ok(Some(id)) => return self.plan_image(config, id),
            Ok(None) => format!("image {} is not in the node's image store", config.image),
            Err(_) if config.image.is_empty() => "the container names no image".to_owned(),
            Err(error) => format!("{error}, which the node's image store cannot hold"),
        };
        if config.command.is_empty() {
            return Err(invalid(
                "command",
                format!(
                    "{reason}: without the image's entrypoint, the container must give a \
                     command to run on the host filesystem (or the image be imported)"
                ),
            ));
        }
        Ok(Plan {
            filesystem: Filesystem::Host { reason },
            image: config.image.clone(),
            argv: config.command.iter().chain(&config.args).cloned().collect(),
            working_dir: config.working_dir.clone(),
            env: config.env.clone(),
            message: String::new(),
        })
    }

    /// How `config` runs from the image `id` of the store.
    fn plan_image(&self, config: &ContainerConfig, id: String) -> Result<Plan, RuntimeError> {
        let store = &self.inner.images;
        let gone = || RuntimeError::not_found(ObjectKind::Image, &config.image);
        let rootfs = store.rootfs(&id).ok_or_else(gone)?;
        let process = store.config(&id)?.ok_or_else(gone)?.process(config)?;
        let reference = match Reference::parse(&config.image) {
            Ok(reference) => reference.to_string(),
            // Named by its id: its first tag, if it has one.
            Err(_) => store
                .status(&id)?
                .and_then(|image| image.repo_tags.first().cloned())
                .unwrap_or_else(|| id.clone()),
        };
        // An image's relative WorkingDir is taken from the root, as Docker does.
        let working_dir = Path::new("/").join(&process.working_dir);
        let not_chrooted = if !self.inner.chroot {
            rootfs::CHROOT_TURNED_OFF
        } else if !rustix::process::geteuid().is_root() {
            rootfs::NOT_ROOT
        } else {
            ""
        };
        let (chroot, message) = if not_chrooted.is_empty() {
            let (setpriv, unshare) = self.chroot_tools()?;
            let user = resolve_user(&rootfs, process.user.as_deref().unwrap_or_default())?;
            let chroot = Chroot {
                uid: user.uid,
                gid: user.gid,
                groups: user.additional_gids,
                setpriv,
                unshare,
                root: None,
                shared: None,
            };
            (Some(chroot), String::new())
        } else {
            (None, rootfs::not_chrooted_note(not_chrooted))
        };
        Ok(Plan {
            filesystem: Filesystem::Image(ImageRoot {
                reference: reference.clone(),
                image_id: id,
                rootfs,
                chroot,
                not_chrooted: not_chrooted.to_owned(),
            }),
            image: reference,
            argv: process.args,
            working_dir: Some(working_dir),
            env: process.env,
            message,
        })
    }

    /// util-linux's `setpriv` and `unshare` (one that can `--root`, `--wd` and `--setuid`).
    fn chroot_tools(&self) -> Result<(PathBuf, PathBuf), RuntimeError> {
        let found = self.inner.chroot_tools.get_or_init(|| {
            let missing = |name: &str| {
                format!(
                    "running a container chrooted into its image needs util-linux's `{name}`, \
                     found in none of /usr/bin, /bin, /usr/sbin and /sbin: install util-linux"
                )
            };
            let setpriv = rootfs::find_tool("setpriv").ok_or_else(|| missing("setpriv"))?;
            let unshare = rootfs::find_tool("unshare").ok_or_else(|| missing("unshare"))?;
            let help = std::process::Command::new(&unshare)
                .arg("--help")
                .output()
                .map_err(|error| format!("running {} --help: {error}", unshare.display()))?;
            let help = String::from_utf8_lossy(&help.stdout);
            if ["--root", "--wd", "--setuid"]
                .iter()
                .any(|option| !help.contains(option))
            {
                return Err(format!(
                    "running a container chrooted into its image needs util-linux 2.36 or later: \
                     {} has no --root, --wd or --setuid",
                    unshare.display()
                ));
            }
            Ok((setpriv, unshare))
        });
        found.clone().map_err(RuntimeError::Unsupported)
    }

    /// Gives a chrooted container its root before it starts: its own overlay of the image's
    /// root filesystem with `/proc`, `/dev` and the host's `/etc/hosts` and `/etc/resolv.conf`,
    /// or, when the overlay cannot be mounted, the image's shared root filesystem (which the
    /// status message then tells).
    fn prepare_rootfs(&self, id: &str, record: &mut ContainerRecord) -> Result<(), RuntimeError> {
        let working_dir = record
            .working_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/"));
        let Filesystem::Image(ImageRoot {
            reference,
            rootfs,
            chroot: Some(chroot),
            ..
        }) = &mut record.filesystem
        else {
            return Ok(());
        };
        if !rootfs.is_dir() {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::Container,
                id: id.to_owned(),
                reason: format!(
                    "the root filesystem of its image {reference} is gone from the image store \
                     ({} was removed since the container was created)",
                    rootfs.display()
                ),
            });
        }
        let directory = self.container_rootfs(id);
        // What an earlier attempt at starting it left mounted.
        rootfs::release(&directory)
            .map_err(|error| internal("unmounting the container's root filesystem", error))?;
        match rootfs::mount_overlay(&directory, rootfs) {
            Ok(merged) => {
                if let Err(error) = rootfs::furnish(&merged, &working_dir) {
                    let _ = rootfs::release(&directory);
                    return Err(internal("preparing the container's root filesystem", error));
                }
                chroot.root = Some(merged);
                chroot.shared = None;
            }
            Err(error) => {
                let why = error.to_string();
                chroot.root = Some(rootfs.clone());
                add_note(&mut record.message, &rootfs::shared_note(&why));
                chroot.shared = Some(why);
            }
        }
        Ok(())
    }

    /// A container (its id and name) that runs from the image `reference` names, if removing
    /// `reference` would remove the image from the store.
    fn container_using(&self, reference: &str) -> Option<(String, String)> {
        let store = &self.inner.images;
        let id = store.resolve(reference).ok().flatten()?;
        let removes_image = image_id(reference).is_some() || {
            let key = Reference::parse(reference).ok()?.key();
            let image = store.status(&id).ok().flatten()?;
            image.repo_tags.iter().all(|tag| *tag == key)
        };
        if !removes_image {
            return None;
        }
        self.lock().containers.values().find_map(|container| {
            let record = &container.record;
            match &record.filesystem {
                Filesystem::Image(image) if image.image_id == id => {
                    Some((record.id.clone(), record.name.clone()))
                }
                _ => None,
            }
        })
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

/// Adds `note` to a status message, after what it says already.
fn add_note(message: &mut String, note: &str) {
    if !message.is_empty() {
        message.push_str("; ");
    }
    message.push_str(note);
}

/// What a container runs, and on which filesystem ([`ProcessRuntime::plan`]).
#[derive(Debug)]
struct Plan {
    filesystem: Filesystem,
    /// The image as the status reports it.
    image: String,
    argv: Vec<String>,
    working_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// What the status message says from the start.
    message: String,
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
        if let Some(directory) = &config.working_dir
            && !directory.is_absolute()
        {
            return Err(invalid(
                "working_dir",
                format!("{} is not an absolute path", directory.display()),
            ));
        }
        let plan = self.plan(config)?;
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
                image: plan.image,
                argv: plan.argv,
                working_dir: plan.working_dir,
                env: plan.env,
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
                message: plan.message,
                cgroup: None,
                filesystem: plan.filesystem,
            }
        };
        std::fs::create_dir_all(self.container_directory(&id))
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
                    add_note(
                        &mut record.message,
                        &format!("resource limits not applied: {why}"),
                    );
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
        let mut record = {
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
        self.prepare_rootfs(id, &mut record)?;
        let launch = rootfs::launch(
            &record.filesystem,
            &record.argv,
            record.working_dir.as_deref(),
            &record.env,
        )
        .map_err(|error| internal("starting the container", error))?;
        let files = self.container_files(id);
        let mut child = supervise::spawn(
            &launch.argv,
            &record.env,
            launch.working_dir.as_deref(),
            &files,
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
        // Its output is copied from before the command runs: none is lost if it ends at once.
        if let Err(error) = self.start_log_pumps(id, &record.log_path) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(error);
        }
        supervise::open_gate(&mut child);
        let (ended_tx, ended_rx) = watch::channel(false);
        let started = {
            let mut state = self.lock();
            let Some(container) = state.containers.get_mut(id) else {
                return Err(RuntimeError::not_found(ObjectKind::Container, id));
            };
            let ContainerRecord {
                filesystem,
                message,
                ..
            } = record;
            let record = &mut container.record;
            record.filesystem = filesystem;
            record.message = message;
            record.phase = Phase::Running;
            record.started_at = Some(self.inner.clock.now());
            record.pid = pid;
            record.process_start = pid.and_then(supervise::process_start);
            container.ended = Some(ended_rx);
            record.clone()
        };
        self.save_container(&started)?;
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
        // Its overlay, /proc and /dev (mounted by this runtime or an earlier one): the directory
        // is deleted only once nothing is mounted in it.
        let directory = self.container_directory(id);
        rootfs::release(&directory)
            .map_err(|error| internal("unmounting the container's root filesystem", error))?;
        if self.lock().containers.remove(id).is_some() {
            let _ = std::fs::remove_file(self.container_path(id));
            let _ = std::fs::remove_dir_all(&directory);
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
        let Some(program) = command.first() else {
            return Err(invalid("command", "must not be empty"));
        };
        // Where the container's process runs: in its chroot, from its image's files, or on the
        // host.
        let launch = rootfs::launch(
            &record.filesystem,
            command,
            record.working_dir.as_deref(),
            &record.env,
        )
        .map_err(|error| internal(&format!("exec {command:?} in container {id}"), error))?;
        let Some((host_program, arguments)) = launch.argv.split_first() else {
            return Err(invalid("command", "must not be empty"));
        };
        let mut process = tokio::process::Command::new(host_program);
        process
            .args(arguments)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if !record.env.iter().any(|(name, _)| name == "PATH") {
            process.env("PATH", supervise::DEFAULT_PATH);
        }
        process.envs(record.env.iter().map(|(name, value)| (name, value)));
        if let Some(directory) = &launch.working_dir {
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

/// CRI's `ImageService`, served by the runtime's image store ([`ProcessRuntime::images`]), so
/// that one object serves both of CRI's services. An image that a container (running or not,
/// until it is removed) runs from is not removed: its root filesystem is that container's.
#[async_trait]
impl ImageService for ProcessRuntime {
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        self.inner.images.list_images().await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        self.inner.images.image_status(image).await
    }

    async fn import_image(&self, archive: &Path) -> Result<Vec<Image>, RuntimeError> {
        self.inner.images.import_image(archive).await
    }

    async fn pull_image(&self, image: &str) -> Result<Image, RuntimeError> {
        self.inner.images.pull_image(image).await
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        if let Some((id, name)) = self.container_using(image) {
            return Err(RuntimeError::FailedPrecondition {
                kind: ObjectKind::Image,
                id: image.to_owned(),
                reason: format!(
                    "is used by container {name:?} ({id}), which runs from its root filesystem: \
                     remove the container first"
                ),
            });
        }
        self.inner.images.remove_image(image).await
    }
}
