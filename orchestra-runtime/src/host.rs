//! The node's resources read from the Linux host, for the node agent's
//! [`Heartbeat`](orchestra_core::node_agent::heartbeat::Heartbeat): [`HostResources`] implements
//! [`NodeResources`] as kubelet reads the machine (through cAdvisor and its eviction manager).
//!
//! The capacity is read once, when the resources are made:
//!
//! - `cpu`: the CPUs this process may run on ([`std::thread::available_parallelism`], which
//!   counts the affinity mask — a cgroup cpuset — and a cgroup CPU quota);
//! - `memory`: `MemTotal` of `/proc/meminfo`;
//! - `ephemeral-storage`: the size of the file system holding the agent's data directory
//!   (`statvfs`);
//! - `hugepages-<size>`: the huge pages reserved, for each size the kernel offers
//!   (`/sys/kernel/mm/hugepages`), `0` when none are (as kubelet reports them);
//! - `pods`: the most pods the node takes (kubelet's `--max-pods`, 110).
//!
//! The figures behind the pressure conditions are read at each status update: `MemAvailable`
//! and `MemTotal` of `/proc/meminfo`, the free space and inodes of the data directory's file
//! system, and the processes against the smaller of `/proc/sys/kernel/pid_max` and
//! `/proc/sys/kernel/threads-max` — the number of tasks being the total of `/proc/loadavg`'s
//! fourth field, as kubelet counts them.
//!
//! Every error names the file it is about; an odd file is an error, never a panic.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::node_agent::host::NodeResources;
//! use orchestra_runtime::host::HostResources;
//!
//! let data = tempfile::tempdir()?;
//! let host = HostResources::new(data.path())?;
//! let capacity = host.capacity();
//! assert_eq!(capacity["pods"].0, "110");
//! let stats = host.stats()?;
//! assert!(stats.memory.available_bytes <= stats.memory.capacity_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orchestra_core::k8s::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use orchestra_core::node_agent::host::{
    FsStats, HostError, MemoryStats, NodeResources, NodeStats, PidStats,
};
use orchestra_core::quantity::{Format, Quantity};

/// The most pods a node takes unless told otherwise (kubelet's `--max-pods` default).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Where the host's figures are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    /// The agent's data directory: its file system is the node's `nodefs`.
    pub data_dir: PathBuf,
    /// Where the host's `/proc` is mounted.
    pub proc: PathBuf,
    /// Where the host's `/sys` is mounted.
    pub sys: PathBuf,
}

impl HostPaths {
    /// The host's own `/proc` and `/sys`, with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> HostPaths {
        HostPaths {
            data_dir: data_dir.into(),
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }
}

/// The node's resources as the Linux host has them (see the [module](self)).
#[derive(Clone, Debug)]
pub struct HostResources {
    paths: HostPaths,
    capacity: BTreeMap<String, K8sQuantity>,
}

impl HostResources {
    /// The resources of this host, its `nodefs` the file system of `data_dir`, taking
    /// [`DEFAULT_MAX_PODS`] pods.
    ///
    /// # Errors
    ///
    /// [`HostError`] when `/proc/meminfo` or the data directory's file system cannot be read.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<HostResources, HostError> {
        HostResources::read(HostPaths::new(data_dir), DEFAULT_MAX_PODS)
    }

    /// The resources of the host whose files are at `paths`, taking `max_pods` pods.
    ///
    /// # Errors
    ///
    /// As [`HostResources::new`].
    pub fn read(paths: HostPaths, max_pods: u32) -> Result<HostResources, HostError> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let memory = read_meminfo(&paths.proc)?;
        let nodefs = read_fs(&paths.data_dir)?;
        let mut capacity = BTreeMap::from([
            ("cpu".to_owned(), units(cpus, Format::DecimalSI)),
            (
                "memory".to_owned(),
                units(memory.capacity_bytes, Format::BinarySI),
            ),
            (
                "ephemeral-storage".to_owned(),
                units(nodefs.capacity_bytes, Format::BinarySI),
            ),
            ("pods".to_owned(), units(max_pods, Format::DecimalSI)),
        ]);
        capacity.extend(read_huge_pages(&paths.sys.join("kernel/mm/hugepages")));
        Ok(HostResources { paths, capacity })
    }

    /// Where the figures are read from.
    pub fn paths(&self) -> &HostPaths {
        &self.paths
    }
}

impl NodeResources for HostResources {
    fn capacity(&self) -> BTreeMap<String, K8sQuantity> {
        self.capacity.clone()
    }

    fn stats(&self) -> Result<NodeStats, HostError> {
        Ok(NodeStats {
            memory: read_meminfo(&self.paths.proc)?,
            nodefs: read_fs(&self.paths.data_dir)?,
            pids: read_pids(&self.paths.proc)?,
        })
    }
}

fn units(amount: impl TryInto<i64>, format: Format) -> K8sQuantity {
    K8sQuantity::from(Quantity::from_units(
        amount.try_into().unwrap_or(i64::MAX),
        format,
    ))
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path) -> impl FnOnce(String) -> HostError + '_ {
    move |reason| HostError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

fn read_meminfo(proc: &Path) -> Result<MemoryStats, HostError> {
    let path = proc.join("meminfo");
    parse_meminfo(&read(&path)?).map_err(invalid(&path))
}

fn read_fs(data_dir: &Path) -> Result<FsStats, HostError> {
    let stat = rustix::fs::statvfs(data_dir).map_err(|errno| HostError::Statvfs {
        path: data_dir.to_owned(),
        source: errno.into(),
    })?;
    let bytes = |blocks: u64| blocks.saturating_mul(stat.f_frsize);
    Ok(FsStats {
        available_bytes: bytes(stat.f_bavail),
        capacity_bytes: bytes(stat.f_blocks),
        inodes_free: stat.f_ffree,
        inodes: stat.f_files,
    })
}

fn read_pids(proc: &Path) -> Result<PidStats, HostError> {
    let loadavg = proc.join("loadavg");
    let running = parse_loadavg_tasks(&read(&loadavg)?).map_err(invalid(&loadavg))?;
    // kernel.pid_max and kernel.threads-max both bound the tasks: the smaller one counts.
    let pid_max = proc.join("sys/kernel/pid_max");
    let mut max = parse_count(&read(&pid_max)?).map_err(invalid(&pid_max))?;
    if let Ok(threads) = std::fs::read_to_string(proc.join("sys/kernel/threads-max"))
        && let Ok(threads) = parse_count(&threads)
    {
        max = max.min(threads);
    }
    Ok(PidStats { running, max })
}

/// Each huge page size the kernel offers (`hugepages-2048kB`), with the bytes reserved in it.
fn read_huge_pages(directory: &Path) -> BTreeMap<String, K8sQuantity> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let size = huge_page_size(&entry.file_name().to_string_lossy())?;
            let pages = std::fs::read_to_string(entry.path().join("nr_hugepages"))
                .ok()
                .and_then(|text| parse_count(&text).ok())
                .unwrap_or(0);
            Some((
                huge_page_resource(size),
                units(pages.saturating_mul(size), Format::BinarySI),
            ))
        })
        .collect()
}

/// The size in bytes of the huge pages of a `/sys/kernel/mm/hugepages` entry
/// (`hugepages-2048kB`).
fn huge_page_size(name: &str) -> Option<u64> {
    let kib: u64 = name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    kib.checked_mul(1024).filter(|&size| size > 0)
}

/// The resource name of huge pages of `size` bytes, as kubelet names it (`hugepages-2Mi`).
fn huge_page_resource(size: u64) -> String {
    format!("hugepages-{}", units(size, Format::BinarySI).0)
}

/// Total and available memory from `/proc/meminfo` (values in `kB`, which are KiB). A kernel
/// without `MemAvailable` (before 3.14) has it estimated as `MemFree + Buffers + Cached`.
fn parse_meminfo(text: &str) -> Result<MemoryStats, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_whitespace();
        let (Some(number), unit) = (words.next(), words.next()) else {
            continue;
        };
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{name}: {number:?} is not a number"))?;
        let bytes = match unit {
            None => number,
            Some("kB") => number.saturating_mul(1024),
            Some(other) => return Err(format!("{name}: unknown unit {other:?}")),
        };
        fields.insert(name.trim(), bytes);
    }
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| format!("no {name}"))
    };
    let capacity_bytes = field("MemTotal")?;
    let available_bytes = match field("MemAvailable") {
        Ok(available) => available,
        Err(_) => field("MemFree")?
            .saturating_add(field("Buffers").unwrap_or(0))
            .saturating_add(field("Cached").unwrap_or(0)),
    };
    Ok(MemoryStats {
        available_bytes: available_bytes.min(capacity_bytes),
        capacity_bytes,
    })
}

/// The number of tasks (processes and threads) from `/proc/loadavg`: the total after the slash
/// of its fourth field (`0.10 0.20 0.30 2/345 6789`).
fn parse_loadavg_tasks(text: &str) -> Result<u64, String> {
    let field = text
        .split_whitespace()
        .nth(3)
        .ok_or_else(|| "fewer than 4 fields".to_owned())?;
    let (_, total) = field
        .split_once('/')
        .ok_or_else(|| format!("{field:?} is not running/total"))?;
    total
        .parse()
        .map_err(|_| format!("{total:?} is not a number of tasks"))
}

/// A file holding one number (`/proc/sys/kernel/pid_max`).
fn parse_count(text: &str) -> Result<u64, String> {
    let text = text.trim();
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684084 kB\nMemFree:        16741212 kB\n\
        MemAvailable:   22850128 kB\nBuffers:          123456 kB\nHugePages_Total:       0\n";

    #[test]
    fn meminfo_gives_total_and_available_bytes() {
        assert_eq!(
            parse_meminfo(MEMINFO),
            Ok(MemoryStats {
                available_bytes: 22_850_128 * 1024,
                capacity_bytes: 24_684_084 * 1024,
            })
        );
        // An old kernel: no MemAvailable.
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 1 kB\n";
        assert_eq!(parse_meminfo(old).unwrap().available_bytes, 111 * 1024);
    }

    #[test]
    fn odd_meminfo_is_an_error_not_a_panic() {
        for (text, reason) in [
            ("", "no MemTotal"),
            ("MemAvailable: 5 kB\n", "no MemTotal"),
            ("MemTotal: lots kB\n", "MemTotal: \"lots\" is not a number"),
            ("MemTotal: 5 MB\n", "MemTotal: unknown unit \"MB\""),
            (
                "MemTotal: 99999999999999999999999 kB\n",
                "MemTotal: \"99999999999999999999999\" is not a number",
            ),
            ("MemTotal: -1 kB\n", "MemTotal: \"-1\" is not a number"),
            ("MemTotal: 5 kB\n", "no MemFree"),
        ] {
            assert_eq!(parse_meminfo(text), Err(reason.to_owned()), "{text:?}");
        }
        // Lines without a colon or a value are skipped; a huge value saturates.
        let odd = "garbage\nMemTotal:\nMemTotal: 18446744073709551615 kB\nMemAvailable: 1\n";
        assert_eq!(
            parse_meminfo(odd),
            Ok(MemoryStats {
                available_bytes: 1,
                capacity_bytes: u64::MAX,
            })
        );
        // More available than there is (a racy read) is capped.
        let racy = "MemTotal: 1 kB\nMemAvailable: 2 kB\n";
        assert_eq!(parse_meminfo(racy).unwrap().available_bytes, 1024);
    }

    #[test]
    fn loadavg_gives_the_number_of_tasks() {
        assert_eq!(parse_loadavg_tasks("1.76 0.80 0.31 3/110 23556\n"), Ok(110));
        for text in ["", "1 2 3", "1 2 3 4 5", "1 2 3 4/x 5", "1 2 3 /-1 5"] {
            assert!(parse_loadavg_tasks(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn counts_are_trimmed_numbers() {
        assert_eq!(parse_count("32768\n"), Ok(32768));
        assert!(parse_count("").is_err());
        assert!(parse_count("4194304 pids").is_err());
    }

    #[test]
    fn huge_pages_are_named_as_kubelet_names_them() {
        assert_eq!(huge_page_size("hugepages-2048kB"), Some(2 * 1024 * 1024));
        assert_eq!(huge_page_resource(2 * 1024 * 1024), "hugepages-2Mi");
        assert_eq!(huge_page_resource(1024 * 1024 * 1024), "hugepages-1Gi");
        for odd in [
            "hugepages-kB",
            "hugepages-0kB",
            "hugepages-2048",
            "other",
            "",
        ] {
            assert_eq!(huge_page_size(odd), None, "{odd:?}");
        }
        assert_eq!(huge_page_size("hugepages-99999999999999999999kB"), None);
    }

    /// A fake host: `/proc` and `/sys` files in a directory.
    fn fake_host(meminfo: &str, loadavg: &str, pid_max: &str) -> (tempfile::TempDir, HostPaths) {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        let sys = root.path().join("sys");
        std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        std::fs::create_dir_all(sys.join("kernel/mm/hugepages/hugepages-2048kB")).unwrap();
        std::fs::create_dir_all(sys.join("kernel/mm/hugepages/hugepages-1048576kB")).unwrap();
        std::fs::write(
            sys.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
            "3\n",
        )
        .unwrap();
        std::fs::write(proc.join("meminfo"), meminfo).unwrap();
        std::fs::write(proc.join("loadavg"), loadavg).unwrap();
        std::fs::write(proc.join("sys/kernel/pid_max"), pid_max).unwrap();
        std::fs::write(proc.join("sys/kernel/threads-max"), "1000\n").unwrap();
        let paths = HostPaths {
            data_dir: root.path().to_owned(),
            proc,
            sys,
        };
        (root, paths)
    }

    #[test]
    fn a_fake_host_is_read_whole() {
        let (_root, paths) = fake_host(MEMINFO, "0 0 0 1/200 7\n", "32768\n");
        let host = HostResources::read(paths, 42).unwrap();
        let capacity = host.capacity();
        assert_eq!(capacity["memory"].0, "24684084Ki");
        assert_eq!(capacity["pods"].0, "42");
        assert_eq!(capacity["hugepages-2Mi"].0, "6Mi");
        assert_eq!(capacity["hugepages-1Gi"].0, "0");
        assert!(capacity["cpu"].0.parse::<u32>().unwrap() >= 1);
        let stats = host.stats().unwrap();
        assert_eq!(stats.memory.available_bytes, 22_850_128 * 1024);
        // threads-max is below pid_max here.
        assert_eq!(
            stats.pids,
            PidStats {
                running: 200,
                max: 1000
            }
        );
        assert!(stats.nodefs.available_bytes <= stats.nodefs.capacity_bytes);
    }

    #[test]
    fn errors_name_the_file() {
        let (root, paths) = fake_host("MemTotal: x kB\n", "0 0 0 1/200 7\n", "32768\n");
        let error = HostResources::read(paths.clone(), 110).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: MemTotal: \"x\" is not a number",
                paths.proc.join("meminfo").display()
            )
        );

        std::fs::write(paths.proc.join("meminfo"), MEMINFO).unwrap();
        let host = HostResources::read(paths.clone(), 110).unwrap();
        std::fs::write(paths.proc.join("loadavg"), "0 0 0\n").unwrap();
        let error = host.stats().unwrap_err();
        assert!(matches!(&error, HostError::Invalid { path, .. } if path.ends_with("loadavg")));

        std::fs::write(paths.proc.join("loadavg"), "0 0 0 1/2 3\n").unwrap();
        std::fs::remove_file(paths.proc.join("sys/kernel/pid_max")).unwrap();
        let error = host.stats().unwrap_err();
        assert!(
            matches!(&error, HostError::Read { path, .. } if path.ends_with("pid_max")),
            "{error}"
        );

        let gone = HostPaths {
            data_dir: root.path().join("absent"),
            ..paths
        };
        let error = HostResources::read(gone, 110).unwrap_err();
        assert!(error.to_string().starts_with("statvfs "), "{error}");
        assert!(error.to_string().contains("absent"), "{error}");
    }
}
