//! Resource limits for the process runtime's containers, through cgroups.
//!
//! A container created with limits ([`ContainerResources`]: CPU shares, a CFS quota, a memory
//! limit, a process limit) gets a cgroup of its own, `<parent>/<container id>` (the parent is
//! [`DEFAULT_PARENT`] unless the runtime is told otherwise), with the limits written the way runc
//! writes them:
//!
//! | limit          | cgroup v1 (one hierarchy per controller)             | cgroup v2 (unified)   |
//! |----------------|------------------------------------------------------|-----------------------|
//! | CPU shares     | `cpu.shares`                                         | `cpu.weight`          |
//! | CFS quota      | `cpu.cfs_period_us`, `cpu.cfs_quota_us`              | `cpu.max`             |
//! | memory         | `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, no swap) | `memory.max` (and `memory.swap.max` 0) |
//! | processes      | `pids.max`                                           | `pids.max`            |
//!
//! The container's supervising process is moved into the cgroup (its pid written to each
//! `cgroup.procs`) before it runs the command, so the command and everything it starts are in
//! it. When the container's process ends, the cgroup is removed if nothing is left in it;
//! when the container is removed, what is left in it is killed and it is removed. A process the kernel kills for going over the memory limit shows in the cgroup's
//! `oom_kill` count (`memory.oom_control` in v1, `memory.events` in v2), from which the runtime
//! reports the container `OOMKilled`, as kubelet does.
//!
//! Cgroups take root: a runtime that is not root, or finds no cgroup file system
//! ([`CgroupSupport::probe`]), runs containers without their limits and says so in their status
//! message rather than failing them.
//!
//! The hierarchies are found in `/proc/self/mountinfo` ([`Hierarchy::detect`]): the v1
//! controllers `memory`, `cpu` and `pids` where the host mounts them (a hybrid host mounts them
//! beside a unified hierarchy that holds no controller), else the unified hierarchy.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use orchestra_core::container_runtime::ContainerResources;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

/// Where containers' cgroups go, relative to the root of each hierarchy, unless the runtime is
/// told otherwise.
pub const DEFAULT_PARENT: &str = "orchestra";

/// The controllers the runtime limits containers with.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// The key of the one directory of a cgroup v2 cgroup.
const UNIFIED: &str = "unified";

/// Why a cgroup could not be read, made, changed or removed. Each error names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A value could not be written to a file.
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be made.
    #[error("creating {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed (`EBUSY`: processes are still in it).
    #[error("removing {}: {source}", path.display())]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path or a file's content is not what it should be.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The path or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where the host mounts its cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: the unified hierarchy, mounted at `root`.
    Unified {
        /// Its mount point (`/sys/fs/cgroup`).
        root: PathBuf,
    },
    /// cgroup v1: a hierarchy per controller.
    Legacy {
        /// The mount point of each of the `memory`, `cpu` and `pids` controllers the host
        /// mounts (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu,cpuacct`, ...).
        mounts: BTreeMap<String, PathBuf>,
    },
}

impl Hierarchy {
    /// The host's cgroup hierarchies, from `/proc/self/mountinfo`; `None` when no cgroup file
    /// system is mounted.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Read`] when `/proc/self/mountinfo` cannot be read.
    pub fn detect() -> Result<Option<Hierarchy>, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Hierarchy::from_mountinfo(&text))
    }

    /// The cgroup hierarchies a `mountinfo` file lists (see [`Hierarchy::detect`]). Lines that
    /// are not mounts are skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_runtime::process::cgroup::Hierarchy;
    ///
    /// let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
    /// assert_eq!(
    ///     Hierarchy::from_mountinfo(mountinfo),
    ///     Some(Hierarchy::Unified { root: "/sys/fs/cgroup".into() })
    /// );
    /// ```
    pub fn from_mountinfo(text: &str) -> Option<Hierarchy> {
        let mut mounts = BTreeMap::new();
        let mut unified = None;
        for line in text.lines() {
            let Some((mount, filesystem)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = mount.split_whitespace().nth(4) else {
                continue;
            };
            let mut filesystem = filesystem.split_whitespace();
            let (Some(kind), Some(_source), Some(options)) =
                (filesystem.next(), filesystem.next(), filesystem.next())
            else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match kind {
                "cgroup2" => {
                    unified.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for option in options.split(',') {
                        if CONTROLLERS.contains(&option) {
                            mounts
                                .entry(option.to_owned())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if !mounts.is_empty() {
            Some(Hierarchy::Legacy { mounts })
        } else {
            unified.map(|root| Hierarchy::Unified { root })
        }
    }

    /// The directory of the cgroup `path` (as `/proc/<pid>/cgroup` names it, from the root of
    /// the hierarchy) of `controller`; `None` for a controller the host does not mount.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_runtime::process::cgroup::Hierarchy;
    ///
    /// let unified = Hierarchy::Unified { root: "/sys/fs/cgroup".into() };
    /// assert_eq!(
    ///     unified.directory("memory", "/orchestra/c1".as_ref()),
    ///     Some("/sys/fs/cgroup/orchestra/c1".into())
    /// );
    /// ```
    pub fn directory(&self, controller: &str, path: &Path) -> Option<PathBuf> {
        let relative = path.strip_prefix("/").unwrap_or(path);
        match self {
            Hierarchy::Unified { root } => Some(root.join(relative)),
            Hierarchy::Legacy { mounts } => mounts.get(controller).map(|m| m.join(relative)),
        }
    }

    /// Makes the cgroup `name` (relative to the root of each hierarchy: `orchestra/<id>`) with
    /// the limits of `resources`. A cgroup left over with that name is reused.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Invalid`] for a name that is not a plain relative path; what making the
    /// directories or writing the limits fails with (what was made is removed again).
    pub fn create(
        &self,
        name: &Path,
        resources: &ContainerResources,
    ) -> Result<Cgroup, CgroupError> {
        let name = relative_name(name)?;
        if name.as_os_str().is_empty() {
            return Err(CgroupError::Invalid {
                path: name,
                reason: "a container's cgroup cannot be the root of the hierarchy".to_owned(),
            });
        }
        let cgroup = match self {
            Hierarchy::Unified { root } => {
                enable_controllers(root, &name)?;
                Cgroup {
                    directories: BTreeMap::from([(UNIFIED.to_owned(), root.join(&name))]),
                }
            }
            Hierarchy::Legacy { mounts } => Cgroup {
                directories: mounts
                    .iter()
                    .map(|(controller, mount)| (controller.clone(), mount.join(&name)))
                    .collect(),
            },
        };
        let written = cgroup.make(resources);
        if written.is_err() {
            let _ = cgroup.remove();
        }
        written.map(|()| cgroup)
    }
}

/// Decodes the octal escapes of a `mountinfo` path (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && let Some(digits) = bytes.get(index + 1..index + 4)
            && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
            && let Ok(byte) = u8::from_str_radix(&String::from_utf8_lossy(digits), 8)
        {
            out.push(byte);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` without its leading `/` or `.`, refused if it climbs (`..`).
fn relative_name(name: &Path) -> Result<PathBuf, CgroupError> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::Invalid {
                    path: name.to_owned(),
                    reason: "a cgroup's name must not climb out of the hierarchy".to_owned(),
                });
            }
        }
    }
    Ok(relative)
}

fn write(path: &Path, value: impl ToString) -> Result<(), CgroupError> {
    let value = value.to_string();
    std::fs::write(path, &value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value,
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Create {
        path: path.to_owned(),
        source,
    })
}

/// cgroup v2: makes the directories down to `name`'s parent, each with the controllers enabled
/// for its children (`cgroup.subtree_control`), so that the cgroup `name` has them.
fn enable_controllers(root: &Path, name: &Path) -> Result<(), CgroupError> {
    let mut directory = root.to_owned();
    let mut parents = vec![directory.clone()];
    for part in name.parent().into_iter().flat_map(Path::components) {
        directory.push(part);
        parents.push(directory.clone());
    }
    for directory in parents {
        create_dir(&directory)?;
        let available =
            std::fs::read_to_string(directory.join("cgroup.controllers")).unwrap_or_default();
        let control = directory.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control).unwrap_or_default();
        for controller in CONTROLLERS {
            let listed = |text: &str| text.split_whitespace().any(|c| c == controller);
            if listed(&available) && !listed(&enabled) {
                write(&control, format!("+{controller}"))?;
            }
        }
    }
    Ok(())
}

/// The cgroup v2 `cpu.weight` of cgroup v1 `cpu.shares` (Kubernetes' `CpuSharesToCpuWeight`:
/// shares 2–262144 onto weights 1–10000).
///
/// # Examples
///
/// ```
/// use orchestra_runtime::process::cgroup::cpu_weight;
///
/// assert_eq!(cpu_weight(2), 1);
/// assert_eq!(cpu_weight(1024), 39);
/// assert_eq!(cpu_weight(262_144), 10_000);
/// ```
pub fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The `oom_kill` count of a `memory.oom_control` (v1) or `memory.events` (v2) file.
fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("oom_kill"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// A container's cgroup: its directory in each hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// By controller (`memory`, `cpu`, `pids`) for cgroup v1; one, `unified`, for cgroup v2.
    directories: BTreeMap<String, PathBuf>,
}

impl Cgroup {
    /// Its directories: one per controller (cgroup v1), or one (cgroup v2).
    pub fn directories(&self) -> impl Iterator<Item = &Path> {
        self.directories.values().map(PathBuf::as_path)
    }

    /// Whether it is in the unified hierarchy (cgroup v2).
    pub fn is_unified(&self) -> bool {
        self.directories.contains_key(UNIFIED)
    }

    /// The directory holding `controller`'s files.
    fn directory(&self, controller: &str) -> Option<&Path> {
        self.directories
            .get(controller)
            .or_else(|| self.directories.get(UNIFIED))
            .map(PathBuf::as_path)
    }

    /// Makes the directories and writes the limits.
    fn make(&self, resources: &ContainerResources) -> Result<(), CgroupError> {
        for directory in self.directories() {
            create_dir(directory)?;
        }
        let unified = self.is_unified();
        if let Some(directory) = self.directory("memory")
            && let Some(limit) = resources.memory_limit_bytes.filter(|&limit| limit > 0)
        {
            // No swap beyond the limit, as kubelet asks of the runtime unless swap is allowed.
            let (limit_file, swap_file, swap) = if unified {
                ("memory.max", "memory.swap.max", 0)
            } else {
                (
                    "memory.limit_in_bytes",
                    "memory.memsw.limit_in_bytes",
                    limit,
                )
            };
            write(&directory.join(limit_file), limit)?;
            let swap_file = directory.join(swap_file);
            if swap_file.exists() {
                write(&swap_file, swap)?;
            }
        }
        if let Some(directory) = self.directory("cpu") {
            if let Some(shares) = resources.cpu_shares {
                if unified {
                    write(&directory.join("cpu.weight"), cpu_weight(shares))?;
                } else {
                    write(&directory.join("cpu.shares"), shares)?;
                }
            }
            let quota = resources.cpu_quota.filter(|&quota| quota > 0);
            if unified {
                if quota.is_some() || resources.cpu_period.is_some() {
                    let period = resources.cpu_period.unwrap_or(100_000);
                    let quota = quota.map_or_else(|| "max".to_owned(), |q| q.to_string());
                    write(&directory.join("cpu.max"), format!("{quota} {period}"))?;
                }
            } else {
                if let Some(period) = resources.cpu_period {
                    write(&directory.join("cpu.cfs_period_us"), period)?;
                }
                if let Some(quota) = quota {
                    write(&directory.join("cpu.cfs_quota_us"), quota)?;
                }
            }
        }
        if let Some(directory) = self.directory("pids")
            && let Some(limit) = resources.pids_limit.filter(|&limit| limit > 0)
        {
            write(&directory.join("pids.max"), limit)?;
        }
        Ok(())
    }

    /// Moves the process `pid` (and so what it starts from then on) into the cgroup.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Write`] naming the `cgroup.procs` file that refused it.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for directory in self.directories() {
            write(&directory.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Read`] when a `cgroup.procs` file cannot be read (not when its cgroup is
    /// gone).
    pub fn processes(&self) -> Result<Vec<u32>, CgroupError> {
        let mut processes = Vec::new();
        for directory in self.directories() {
            let path = directory.join("cgroup.procs");
            match std::fs::read_to_string(&path) {
                Ok(text) => processes.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                ),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Read { path, source }),
            }
        }
        processes.sort_unstable();
        processes.dedup();
        Ok(processes)
    }

    /// Sends SIGKILL to every process in the cgroup.
    ///
    /// # Errors
    ///
    /// As [`Cgroup::processes`].
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        for pid in self.processes()? {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        Ok(())
    }

    /// How many processes the kernel killed in the cgroup for going over its memory limit.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Read`] or [`CgroupError::Invalid`] when the count cannot be read (a kernel
    /// before 4.13 does not keep it in cgroup v1).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let Some(directory) = self.directory("memory") else {
            return Ok(0);
        };
        let path = directory.join(if self.is_unified() {
            "memory.events"
        } else {
            "memory.oom_control"
        });
        parse_oom_kills(&read(&path)?).ok_or_else(|| CgroupError::Invalid {
            path,
            reason: "no oom_kill count".to_owned(),
        })
    }

    /// Removes the cgroup's directories (those already gone are not an error).
    ///
    /// # Errors
    ///
    /// [`CgroupError::Remove`] for the first directory that could not be removed (`EBUSY` while
    /// processes are in it); the others are removed all the same.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for directory in self.directories() {
            match std::fs::remove_dir(directory) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    first_error.get_or_insert(CgroupError::Remove {
                        path: directory.to_owned(),
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether the runtime can put containers in cgroups, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupSupport {
    /// It can: each container's cgroup goes under `parent` in `hierarchy`.
    Available {
        /// The host's hierarchies.
        hierarchy: Hierarchy,
        /// Where containers' cgroups go, relative to the root of each hierarchy.
        parent: PathBuf,
    },
    /// It cannot, for the reason given (not root, no cgroup file system, a read-only one, ...).
    Unavailable(String),
}

impl CgroupSupport {
    /// Finds out whether containers can get cgroups under `parent` (relative to the root of
    /// each hierarchy; [`DEFAULT_PARENT`] by default): the runtime must be root, a cgroup file
    /// system mounted, and the parent cgroup made (it is, here, if missing).
    pub fn probe(parent: &Path) -> CgroupSupport {
        if !rustix::process::geteuid().is_root() {
            return CgroupSupport::Unavailable("not running as root".to_owned());
        }
        let hierarchy = match Hierarchy::detect() {
            Ok(Some(hierarchy)) => hierarchy,
            Ok(None) => {
                return CgroupSupport::Unavailable("no cgroup file system is mounted".to_owned());
            }
            Err(error) => return CgroupSupport::Unavailable(error.to_string()),
        };
        CgroupSupport::with_hierarchy(hierarchy, parent)
    }

    /// As [`CgroupSupport::probe`], in `hierarchy`, whoever runs it.
    pub fn with_hierarchy(hierarchy: Hierarchy, parent: &Path) -> CgroupSupport {
        let parent = match relative_name(parent) {
            Ok(parent) => parent,
            Err(error) => return CgroupSupport::Unavailable(error.to_string()),
        };
        let prepared = match &hierarchy {
            Hierarchy::Unified { root } => enable_controllers(root, &parent.join("container")),
            Hierarchy::Legacy { mounts } => mounts
                .values()
                .try_for_each(|mount| create_dir(&mount.join(&parent))),
        };
        match prepared {
            Ok(()) => CgroupSupport::Available { hierarchy, parent },
            Err(error) => CgroupSupport::Unavailable(error.to_string()),
        }
    }

    /// Why containers get no cgroups, if they do not.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            CgroupSupport::Available { .. } => None,
            CgroupSupport::Unavailable(why) => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's: a hybrid host, v1 controllers beside an empty unified hierarchy.
    const HYBRID: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
25 20 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
31 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_limits_with_its_v1_controllers() {
        let mounts = BTreeMap::from([
            ("cpu".to_owned(), PathBuf::from("/sys/fs/cgroup/cpu")),
            ("memory".to_owned(), PathBuf::from("/sys/fs/cgroup/memory")),
            ("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids")),
        ]);
        assert_eq!(
            Hierarchy::from_mountinfo(HYBRID),
            Some(Hierarchy::Legacy { mounts })
        );
        // systemd's layout: cpu and cpuacct together.
        let systemd =
            "35 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct\n";
        let Some(Hierarchy::Legacy { mounts }) = Hierarchy::from_mountinfo(systemd) else {
            panic!("not v1");
        };
        assert_eq!(mounts["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!mounts.contains_key("memory"));
    }

    #[test]
    fn a_unified_host_and_odd_mountinfo() {
        let unified = "\
garbage
1 2 3
40 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate
41 25 0:31 / /mnt/other\\040cgroup rw - cgroup2 none rw
";
        assert_eq!(
            Hierarchy::from_mountinfo(unified),
            Some(Hierarchy::Unified {
                root: "/sys/fs/cgroup".into()
            })
        );
        let escaped = "41 25 0:31 / /mnt/my\\040cgroup\\134x rw - cgroup2 none rw\n";
        assert_eq!(
            Hierarchy::from_mountinfo(escaped),
            Some(Hierarchy::Unified {
                root: "/mnt/my cgroup\\x".into()
            })
        );
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\999"), "a\\999");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(Hierarchy::from_mountinfo(""), None);
        assert_eq!(
            Hierarchy::from_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n - \n"),
            None
        );
    }

    #[test]
    fn names_stay_inside_the_hierarchy() {
        assert_eq!(
            relative_name(Path::new("/orchestra/./c1")).unwrap(),
            Path::new("orchestra/c1")
        );
        assert!(relative_name(Path::new("orchestra/../../etc")).is_err());
        let hierarchy = Hierarchy::Unified {
            root: "/nonexistent".into(),
        };
        assert!(matches!(
            hierarchy.create(Path::new("/"), &ContainerResources::default()),
            Err(CgroupError::Invalid { .. })
        ));
    }

    #[test]
    fn shares_map_onto_weights_as_kubernetes_maps_them() {
        assert_eq!(cpu_weight(0), 1);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(102), 4);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(u64::MAX), 10_000);
    }

    #[test]
    fn oom_kills_are_read_from_either_file() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kills(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(parse_oom_kills("oom_kill lots\n"), None);
        assert_eq!(parse_oom_kills(""), None);
    }

    fn limits() -> ContainerResources {
        ContainerResources {
            cpu_shares: Some(512),
            cpu_period: Some(100_000),
            cpu_quota: Some(50_000),
            memory_limit_bytes: Some(64 << 20),
            pids_limit: Some(32),
        }
    }

    fn contents(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn v1_limits_go_to_each_controller() {
        let root = tempfile::tempdir().unwrap();
        let mounts: BTreeMap<String, PathBuf> = CONTROLLERS
            .iter()
            .map(|c| (c.to_string(), root.path().join(c)))
            .collect();
        // The memory controller counts swap.
        let swap = root
            .path()
            .join("memory/orchestra/c1/memory.memsw.limit_in_bytes");
        std::fs::create_dir_all(swap.parent().unwrap()).unwrap();
        std::fs::write(&swap, "9223372036854771712").unwrap();
        let hierarchy = Hierarchy::Legacy { mounts };
        let cgroup = hierarchy
            .create(Path::new("orchestra/c1"), &limits())
            .unwrap();
        let at = |file: &str| root.path().join(file);
        assert_eq!(
            contents(&at("memory/orchestra/c1/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(contents(&swap), "67108864");
        assert_eq!(contents(&at("cpu/orchestra/c1/cpu.shares")), "512");
        assert_eq!(
            contents(&at("cpu/orchestra/c1/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(contents(&at("cpu/orchestra/c1/cpu.cfs_quota_us")), "50000");
        assert_eq!(contents(&at("pids/orchestra/c1/pids.max")), "32");
        assert!(!cgroup.is_unified());
        assert_eq!(cgroup.directories().count(), 3);

        cgroup.add_process(4242).unwrap();
        assert_eq!(contents(&at("pids/orchestra/c1/cgroup.procs")), "4242");
        assert_eq!(cgroup.processes().unwrap(), [4242]);
        std::fs::write(
            at("memory/orchestra/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cgroup.oom_kills().unwrap(), 1);
        // Nothing limited but the memory: the other files are not written.
        let only_memory = ContainerResources {
            memory_limit_bytes: Some(1 << 20),
            ..ContainerResources::default()
        };
        hierarchy
            .create(Path::new("orchestra/c2"), &only_memory)
            .unwrap();
        assert!(!at("cpu/orchestra/c2/cpu.shares").exists());
        assert!(!at("pids/orchestra/c2/pids.max").exists());
        assert!(at("cpu/orchestra/c2").is_dir());
    }

    #[test]
    fn v2_limits_go_to_one_directory_with_the_controllers_enabled_above_it() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory\n").unwrap();
        std::fs::create_dir(root.path().join("orchestra")).unwrap();
        std::fs::write(
            root.path().join("orchestra/cgroup.controllers"),
            "cpu memory\n",
        )
        .unwrap();
        let hierarchy = Hierarchy::Unified {
            root: root.path().to_owned(),
        };
        let swap = root.path().join("orchestra/c1/memory.swap.max");
        std::fs::create_dir_all(swap.parent().unwrap()).unwrap();
        std::fs::write(&swap, "max").unwrap();
        let cgroup = hierarchy
            .create(Path::new("orchestra/c1"), &limits())
            .unwrap();
        let at = |file: &str| root.path().join(file);
        // Each missing controller was enabled (the last one written is what the file holds
        // here; the kernel keeps them all).
        assert_eq!(contents(&at("cgroup.subtree_control")), "+pids");
        assert_eq!(contents(&at("orchestra/cgroup.subtree_control")), "+cpu");
        assert_eq!(contents(&at("orchestra/c1/memory.max")), "67108864");
        assert_eq!(contents(&swap), "0");
        assert_eq!(contents(&at("orchestra/c1/cpu.weight")), "20");
        assert_eq!(contents(&at("orchestra/c1/cpu.max")), "50000 100000");
        assert_eq!(contents(&at("orchestra/c1/pids.max")), "32");
        assert!(cgroup.is_unified());
        std::fs::write(
            at("orchestra/c1/memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert_eq!(cgroup.oom_kills().unwrap(), 0);

        // A period without a quota: no limit on the CPU.
        let period_only = ContainerResources {
            cpu_period: Some(100_000),
            ..ContainerResources::default()
        };
        hierarchy
            .create(Path::new("orchestra/c2"), &period_only)
            .unwrap();
        assert_eq!(contents(&at("orchestra/c2/cpu.max")), "max 100000");
    }

    #[test]
    fn a_failed_write_names_the_file_and_undoes_the_cgroup() {
        let root = tempfile::tempdir().unwrap();
        // The cpu controller's "mount" is a file: nothing can be made under it.
        std::fs::write(root.path().join("cpu"), "").unwrap();
        let hierarchy = Hierarchy::Legacy {
            mounts: BTreeMap::from([
                ("memory".to_owned(), root.path().join("memory")),
                ("cpu".to_owned(), root.path().join("cpu")),
            ]),
        };
        let error = hierarchy
            .create(Path::new("orchestra/c1"), &limits())
            .unwrap_err();
        assert!(
            matches!(&error, CgroupError::Create { path, .. } if path.ends_with("cpu/orchestra/c1")),
            "{error}"
        );
        assert!(error.to_string().contains("cpu/orchestra/c1"), "{error}");
        // The directories are all made before any limit is written: nothing was.
        assert!(
            !root
                .path()
                .join("memory/orchestra/c1/memory.limit_in_bytes")
                .exists()
        );
    }

    #[test]
    fn removing_twice_is_fine_and_a_busy_cgroup_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = Cgroup {
            directories: BTreeMap::from([
                ("memory".to_owned(), root.path().join("memory/c1")),
                ("pids".to_owned(), root.path().join("pids/c1")),
            ]),
        };
        std::fs::create_dir_all(root.path().join("memory/c1")).unwrap();
        std::fs::create_dir_all(root.path().join("pids/c1")).unwrap();
        std::fs::write(root.path().join("pids/c1/cgroup.procs"), "1\n").unwrap();
        let error = cgroup.remove().unwrap_err();
        assert!(matches!(&error, CgroupError::Remove { path, .. } if path.ends_with("pids/c1")));
        assert!(!root.path().join("memory/c1").exists());
        std::fs::remove_file(root.path().join("pids/c1/cgroup.procs")).unwrap();
        cgroup.remove().unwrap();
        cgroup.remove().unwrap();
        assert_eq!(cgroup.processes().unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn support_needs_a_parent_inside_the_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::Legacy {
            mounts: BTreeMap::from([("memory".to_owned(), root.path().join("memory"))]),
        };
        let support = CgroupSupport::with_hierarchy(hierarchy.clone(), Path::new("/a/b"));
        assert_eq!(
            support,
            CgroupSupport::Available {
                hierarchy: hierarchy.clone(),
                parent: "a/b".into()
            }
        );
        assert!(root.path().join("memory/a/b").is_dir());
        assert_eq!(support.unavailable(), None);
        let support = CgroupSupport::with_hierarchy(hierarchy, Path::new("../x"));
        assert!(
            support.unavailable().unwrap().contains("climb"),
            "{support:?}"
        );
    }
}
