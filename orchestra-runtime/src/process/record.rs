//! What the process runtime remembers of its sandboxes and containers, on disk, so that a
//! restarted node agent finds (and adopts) what still runs.
//!
//! One JSON file per object under the runtime's state directory (`sandboxes/<id>.json`,
//! `containers/<id>.json`), replaced atomically (written beside, then renamed) at every change.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use orchestra_core::container_runtime::{
    ContainerMetadata, ContainerState, ContainerStatus, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatus,
};
use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::rootfs::Filesystem;

/// A sandbox as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) uid: String,
    pub(crate) attempt: u32,
    pub(crate) ready: bool,
    pub(crate) created_at: Timestamp,
    pub(crate) ips: Vec<std::net::IpAddr>,
    pub(crate) hostname: String,
    pub(crate) log_directory: Option<PathBuf>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl SandboxRecord {
    pub(crate) fn status(&self) -> PodSandboxStatus {
        PodSandboxStatus {
            id: self.id.clone(),
            metadata: PodSandboxMetadata {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
                attempt: self.attempt,
            },
            state: if self.ready {
                PodSandboxState::Ready
            } else {
                PodSandboxState::NotReady
            },
            created_at: self.created_at,
            ips: self.ips.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Where a container's process is, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    Created,
    Running,
    Exited,
}

/// A container as stored: its config (what starting it needs) and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub(crate) id: String,
    pub(crate) sandbox_id: String,
    pub(crate) name: String,
    pub(crate) attempt: u32,
    /// The image as the container names it, or its normalised reference when it is in the
    /// node's image store.
    pub(crate) image: String,
    /// The executable and all its arguments (inside the image, for a container of an image).
    pub(crate) argv: Vec<String>,
    /// The working directory (inside the image, for a container of an image).
    pub(crate) working_dir: Option<PathBuf>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) log_path: PathBuf,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) phase: Phase,
    pub(crate) created_at: Timestamp,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) exit_code: Option<i32>,
    /// The supervising process (the group leader) while it runs.
    pub(crate) pid: Option<u32>,
    /// That process's start time in clock ticks since boot (`/proc/<pid>/stat`), so that a
    /// recycled pid is not taken for it.
    pub(crate) process_start: Option<u64>,
    pub(crate) reason: String,
    pub(crate) message: String,
    /// Its cgroup, when it has limits and the runtime could give it one.
    #[serde(default)]
    pub(crate) cgroup: Option<Cgroup>,
    /// Where its process finds its files (the host's, for records written before images could
    /// be run).
    #[serde(default)]
    pub(crate) filesystem: Filesystem,
}

impl ContainerRecord {
    pub(crate) fn status(&self) -> ContainerStatus {
        let mut annotations = self.annotations.clone();
        self.filesystem.annotate(&mut annotations);
        ContainerStatus {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            },
            state: match self.phase {
                Phase::Created => ContainerState::Created,
                Phase::Running => ContainerState::Running,
                Phase::Exited => ContainerState::Exited,
            },
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.image.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            log_path: Some(self.log_path.clone()),
            pid: self.pid,
            labels: self.labels.clone(),
            annotations,
        }
    }
}

/// Writes `value` as JSON to `path`, atomically.
pub(crate) fn save<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// The files that could not be read as records, each with why.
pub(crate) type Unreadable = Vec<(PathBuf, String)>;

/// Every record of a directory (`*.json`), and the files that could not be read.
pub(crate) fn load_all<T: for<'de> Deserialize<'de>>(
    directory: &Path,
) -> io::Result<(Vec<T>, Unreadable)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((records, unreadable)),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()))
        {
            Ok(record) => records.push(record),
            Err(error) => unreadable.push((path, error)),
        }
    }
    Ok((records, unreadable))
}
