//! The node's resources as its host has them: what the node has (its capacity), what is left of
//! it now, and what kubelet makes of both — the node's allocatable resources and its
//! `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions.
//!
//! [`NodeResources`] is the seam between the agent and the machine: `orchestra-runtime`'s `host`
//! module reads Linux (`/proc/meminfo`, `statvfs`, `/proc/sys/kernel/pid_max`, ...), and
//! [`FakeNodeResources`] holds figures a test sets. What kubelet does with the figures is pure
//! and lives here:
//!
//! - [`EvictionThresholds`]: kubelet's hard eviction thresholds (`--eviction-hard`, by default
//!   `memory.available<100Mi`, `nodefs.available<10%`, `nodefs.inodesFree<5%`; and here
//!   `pid.available<10%`), and [`EvictionThresholds::pressure`], which of them the node crosses;
//! - [`PressureHistory`]: kubelet's `--eviction-pressure-transition-period`, the time a pressure
//!   condition stays true after its signal last crossed its threshold, so that a node near a
//!   threshold does not flap;
//! - [`allocatable`]: kubelet's node allocatable, the capacity minus what is reserved for the
//!   system (`--system-reserved`, `--kube-reserved`) minus the eviction thresholds for memory and
//!   ephemeral storage.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::node_agent::host::{
//!     EvictionThresholds, FsStats, MemoryStats, NodePressure, NodeStats, PidStats,
//! };
//!
//! const MI: u64 = 1024 * 1024;
//! let stats = NodeStats {
//!     memory: MemoryStats { available_bytes: 64 * MI, capacity_bytes: 4096 * MI },
//!     nodefs: FsStats {
//!         available_bytes: 50 * 1024 * MI,
//!         capacity_bytes: 100 * 1024 * MI,
//!         inodes_free: 1_000_000,
//!         inodes: 2_000_000,
//!     },
//!     pids: PidStats { running: 300, max: 32768 },
//! };
//! let pressure = EvictionThresholds::default().pressure(&stats);
//! assert_eq!(pressure, NodePressure { memory: true, disk: false, pid: false });
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::quantity::{Format, Quantity};

/// Why the host's figures could not be read. Each error names the file (or directory) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file system's figures could not be had (`statvfs`).
    #[error("statvfs {}: {source}", path.display())]
    Statvfs {
        /// A path on the file system.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file does not say what it should (a field missing, a number that is not one).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The node's memory, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// What can be had without swapping (kubelet's `memory.available` signal).
    pub available_bytes: u64,
    /// All of it (the memory capacity).
    pub capacity_bytes: u64,
}

/// The file system of the node's data (kubelet's `nodefs`), now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    /// What unprivileged users can still write (`nodefs.available`).
    pub available_bytes: u64,
    /// Its size.
    pub capacity_bytes: u64,
    /// The inodes still free (`nodefs.inodesFree`).
    pub inodes_free: u64,
    /// All its inodes; 0 for a file system that does not count them (btrfs), whose inodes never
    /// make pressure.
    pub inodes: u64,
}

/// The node's processes, now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStats {
    /// The processes and threads that exist.
    pub running: u64,
    /// The most there may be (the smaller of `kernel.pid_max` and `kernel.threads-max`); 0 when
    /// unknown, which never makes pressure.
    pub max: u64,
}

/// What is left of the node's resources at one moment: what the pressure conditions are computed
/// from (kubelet's eviction signals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Memory.
    pub memory: MemoryStats,
    /// The file system of the node's data.
    pub nodefs: FsStats,
    /// Process ids.
    pub pids: PidStats,
}

/// Where the node agent learns what its host has and has left.
///
/// The capacity is what the machine has, read once (it does not change while the agent runs);
/// the stats are read at each status update.
pub trait NodeResources: Send + Sync + fmt::Debug {
    /// What the node has, by resource name (`cpu`, `memory`, `ephemeral-storage`, `pods`,
    /// `hugepages-2Mi`, ...).
    fn capacity(&self) -> BTreeMap<String, K8sQuantity>;

    /// What is left of it now.
    ///
    /// # Errors
    ///
    /// [`HostError`] when the host's figures cannot be read; the node then keeps the pressure
    /// conditions it last reported.
    fn stats(&self) -> Result<NodeStats, HostError>;
}

/// A threshold on an eviction signal: an amount, or a share of the resource's capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// An amount (bytes, inodes, process ids).
    Amount(u64),
    /// A percentage of the capacity (values above 100 count as 100).
    Percent(u8),
}

impl Threshold {
    /// The threshold as an amount, for a resource of `capacity`.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::node_agent::host::Threshold;
    ///
    /// assert_eq!(Threshold::Percent(10).amount(1000), 100);
    /// assert_eq!(Threshold::Amount(5).amount(1000), 5);
    /// ```
    pub fn amount(&self, capacity: u64) -> u64 {
        match *self {
            Threshold::Amount(amount) => amount,
            Threshold::Percent(percent) => {
                let share = u128::from(capacity) * u128::from(percent.min(100)) / 100;
                u64::try_from(share).unwrap_or(u64::MAX)
            }
        }
    }

    /// Whether `available` of a resource of `capacity` is below the threshold (kubelet's
    /// `LessThan` operator). A resource whose capacity is unknown (0) never is.
    pub fn crossed(&self, available: u64, capacity: u64) -> bool {
        capacity > 0 && available < self.amount(capacity)
    }
}

/// Kubelet's hard eviction thresholds (`--eviction-hard`): below them the node reports pressure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionThresholds {
    /// `memory.available` (kubelet: `100Mi`); `MemoryPressure` below it.
    pub memory_available: Threshold,
    /// `nodefs.available` (kubelet: `10%`); `DiskPressure` below it.
    pub nodefs_available: Threshold,
    /// `nodefs.inodesFree` (kubelet: `5%`); `DiskPressure` below it.
    pub nodefs_inodes_free: Threshold,
    /// `pid.available`, the process ids left (here `10%`; kubelet sets none by default);
    /// `PIDPressure` below it.
    pub pid_available: Threshold,
}

impl Default for EvictionThresholds {
    fn default() -> EvictionThresholds {
        EvictionThresholds {
            memory_available: Threshold::Amount(100 * 1024 * 1024),
            nodefs_available: Threshold::Percent(10),
            nodefs_inodes_free: Threshold::Percent(5),
            pid_available: Threshold::Percent(10),
        }
    }
}

impl EvictionThresholds {
    /// Which thresholds `stats` crosses.
    pub fn pressure(&self, stats: &NodeStats) -> NodePressure {
        let NodeStats {
            memory,
            nodefs,
            pids,
        } = stats;
        NodePressure {
            memory: self
                .memory_available
                .crossed(memory.available_bytes, memory.capacity_bytes),
            disk: self
                .nodefs_available
                .crossed(nodefs.available_bytes, nodefs.capacity_bytes)
                || self
                    .nodefs_inodes_free
                    .crossed(nodefs.inodes_free, nodefs.inodes),
            pid: self
                .pid_available
                .crossed(pids.max.saturating_sub(pids.running), pids.max),
        }
    }
}

/// Which pressure conditions hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodePressure {
    /// `MemoryPressure`.
    pub memory: bool,
    /// `DiskPressure`.
    pub disk: bool,
    /// `PIDPressure`.
    pub pid: bool,
}

/// When each pressure was last observed, for kubelet's transition period: a pressure condition
/// stays true until its signal has stayed above its threshold for the period
/// (`--eviction-pressure-transition-period`, 5 minutes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PressureHistory {
    memory: Option<Timestamp>,
    disk: Option<Timestamp>,
    pid: Option<Timestamp>,
}

impl PressureHistory {
    /// Records what is `observed` at `now`, and gives the conditions to report: those observed,
    /// and those observed less than `period` ago.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestra_core::node_agent::host::{NodePressure, PressureHistory};
    ///
    /// let period = Duration::from_secs(300);
    /// let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
    /// let under = NodePressure { memory: true, ..NodePressure::default() };
    /// let mut history = PressureHistory::default();
    /// assert!(history.observe(under, at(0), period).memory);
    /// assert!(history.observe(NodePressure::default(), at(299), period).memory);
    /// assert!(!history.observe(NodePressure::default(), at(300), period).memory);
    /// ```
    pub fn observe(
        &mut self,
        observed: NodePressure,
        now: Timestamp,
        period: Duration,
    ) -> NodePressure {
        let update = |last: &mut Option<Timestamp>, crossed: bool| {
            if crossed {
                *last = Some(now);
            }
            crossed
                || last.is_some_and(|at| {
                    Duration::try_from(now.duration_since(at)).is_ok_and(|since| since < period)
                })
        };
        NodePressure {
            memory: update(&mut self.memory, observed.memory),
            disk: update(&mut self.disk, observed.disk),
            pid: update(&mut self.pid, observed.pid),
        }
    }
}

/// What pods may use of `capacity`, as kubelet computes node allocatable: each resource's
/// capacity minus what `reserved` holds back for it (system-reserved plus kube-reserved), minus
/// the eviction thresholds of memory (`memory.available`) and ephemeral storage
/// (`nodefs.available`), never below zero; memory also loses what is given to huge pages. A
/// quantity that does not parse is kept as it is.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
/// use orchestra_core::node_agent::host::{EvictionThresholds, allocatable};
///
/// let q = |s: &str| Quantity(s.to_owned());
/// let capacity = BTreeMap::from([
///     ("cpu".to_owned(), q("4")),
///     ("memory".to_owned(), q("4Gi")),
///     ("ephemeral-storage".to_owned(), q("100Gi")),
/// ]);
/// let reserved = BTreeMap::from([("cpu".to_owned(), q("500m"))]);
/// let allocatable = allocatable(&capacity, &reserved, &EvictionThresholds::default());
/// assert_eq!(allocatable["cpu"], q("3500m"));
/// assert_eq!(allocatable["memory"], q("3996Mi"));
/// assert_eq!(allocatable["ephemeral-storage"], q("90Gi"));
/// ```
pub fn allocatable(
    capacity: &BTreeMap<String, K8sQuantity>,
    reserved: &BTreeMap<String, K8sQuantity>,
    thresholds: &EvictionThresholds,
) -> BTreeMap<String, K8sQuantity> {
    let parse = |quantity: &K8sQuantity| Quantity::try_from(quantity).ok();
    let units = |quantity: Quantity| u64::try_from(quantity.as_units_ceil()).unwrap_or(0);
    let eviction = |name: &str, total: Quantity| -> Quantity {
        let threshold = match name {
            "memory" => thresholds.memory_available,
            "ephemeral-storage" => thresholds.nodefs_available,
            _ => return Quantity::ZERO,
        };
        let amount = threshold.amount(units(total));
        Quantity::from_units(i64::try_from(amount).unwrap_or(i64::MAX), Format::BinarySI)
    };
    let huge_pages: Quantity = capacity
        .iter()
        .filter(|(name, _)| name.starts_with("hugepages-"))
        .filter_map(|(_, quantity)| parse(quantity))
        .sum();
    capacity
        .iter()
        .map(|(name, quantity)| {
            let Some(total) = parse(quantity) else {
                return (name.clone(), quantity.clone());
            };
            let mut left = total
                .saturating_sub(reserved.get(name).and_then(parse).unwrap_or_default())
                .saturating_sub(eviction(name, total));
            if name == "memory" {
                left = left.saturating_sub(huge_pages);
            }
            if left.signum() < 0 {
                left = Quantity::ZERO.with_format(total.format());
            }
            (name.clone(), K8sQuantity::from(left))
        })
        .collect()
}

/// Node resources whose figures a test sets.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use orchestra_core::node_agent::host::{FakeNodeResources, NodeResources, NodeStats};
///
/// let fake = FakeNodeResources::new(BTreeMap::new(), NodeStats::default());
/// fake.fail("meminfo is gone");
/// assert!(fake.stats().unwrap_err().to_string().contains("meminfo is gone"));
/// ```
#[derive(Debug)]
pub struct FakeNodeResources {
    capacity: BTreeMap<String, K8sQuantity>,
    stats: Mutex<Result<NodeStats, String>>,
}

impl FakeNodeResources {
    /// Resources with `capacity`, whose stats are `stats` until set otherwise.
    pub fn new(capacity: BTreeMap<String, K8sQuantity>, stats: NodeStats) -> FakeNodeResources {
        FakeNodeResources {
            capacity,
            stats: Mutex::new(Ok(stats)),
        }
    }

    /// Reports `stats` from now on.
    pub fn set_stats(&self, stats: NodeStats) {
        *self.lock() = Ok(stats);
    }

    /// Changes the stats reported from now on with `change`; a failing source comes back with
    /// the last stats it had (or the default ones).
    pub fn update(&self, change: impl FnOnce(&mut NodeStats)) {
        let mut stats = self.lock();
        let mut current = stats.clone().unwrap_or_default();
        change(&mut current);
        *stats = Ok(current);
    }

    /// Fails to read the stats from now on, with `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        *self.lock() = Err(reason.into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<NodeStats, String>> {
        self.stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NodeResources for FakeNodeResources {
    fn capacity(&self) -> BTreeMap<String, K8sQuantity> {
        self.capacity.clone()
    }

    fn stats(&self) -> Result<NodeStats, HostError> {
        self.lock().clone().map_err(|reason| HostError::Invalid {
            path: PathBuf::from("<fake>"),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * MI;

    fn healthy() -> NodeStats {
        NodeStats {
            memory: MemoryStats {
                available_bytes: 2 * GI,
                capacity_bytes: 4 * GI,
            },
            nodefs: FsStats {
                available_bytes: 50 * GI,
                capacity_bytes: 100 * GI,
                inodes_free: 500,
                inodes: 1000,
            },
            pids: PidStats {
                running: 100,
                max: 1000,
            },
        }
    }

    fn q(text: &str) -> K8sQuantity {
        K8sQuantity(text.to_owned())
    }

    #[test]
    fn a_healthy_node_has_no_pressure() {
        let thresholds = EvictionThresholds::default();
        assert_eq!(thresholds.pressure(&healthy()), NodePressure::default());
    }

    #[test]
    fn memory_pressure_is_below_100_mi_available() {
        let thresholds = EvictionThresholds::default();
        let mut stats = healthy();
        stats.memory.available_bytes = 100 * MI;
        assert!(
            !thresholds.pressure(&stats).memory,
            "the threshold itself is fine"
        );
        stats.memory.available_bytes = 100 * MI - 1;
        assert!(thresholds.pressure(&stats).memory);
    }

    #[test]
    fn disk_pressure_is_below_10_percent_space_or_5_percent_inodes() {
        let thresholds = EvictionThresholds::default();
        let mut stats = healthy();
        stats.nodefs.available_bytes = 10 * GI;
        assert!(!thresholds.pressure(&stats).disk);
        stats.nodefs.available_bytes = 10 * GI - 1;
        assert!(thresholds.pressure(&stats).disk);

        let mut stats = healthy();
        stats.nodefs.inodes_free = 49;
        assert!(thresholds.pressure(&stats).disk);
        // A file system that does not count inodes never runs out of them.
        stats.nodefs.inodes = 0;
        stats.nodefs.inodes_free = 0;
        assert!(!thresholds.pressure(&stats).disk);
    }

    #[test]
    fn pid_pressure_is_below_10_percent_of_pid_max_left() {
        let thresholds = EvictionThresholds::default();
        let mut stats = healthy();
        stats.pids.running = 900;
        assert!(!thresholds.pressure(&stats).pid);
        stats.pids.running = 901;
        assert!(thresholds.pressure(&stats).pid);
        // More running than the maximum (the maximum lowered meanwhile): no underflow.
        stats.pids.running = 5000;
        assert!(thresholds.pressure(&stats).pid);
        // An unknown maximum makes no pressure.
        stats.pids.max = 0;
        assert!(!thresholds.pressure(&stats).pid);
    }

    #[test]
    fn percentages_never_overflow() {
        assert_eq!(Threshold::Percent(200).amount(u64::MAX), u64::MAX);
        assert_eq!(Threshold::Percent(50).amount(u64::MAX), u64::MAX / 2);
        assert!(!Threshold::Percent(0).crossed(0, 10));
    }

    #[test]
    fn pressure_lasts_the_transition_period_after_it_was_last_seen() {
        let period = Duration::from_secs(300);
        let at = |seconds: i64| Timestamp::from_second(seconds).unwrap();
        let under = NodePressure {
            disk: true,
            ..NodePressure::default()
        };
        let mut history = PressureHistory::default();
        assert_eq!(
            history.observe(NodePressure::default(), at(0), period),
            NodePressure::default()
        );
        assert_eq!(history.observe(under, at(10), period), under);
        assert_eq!(history.observe(under, at(100), period), under);
        // Counted from the last time it was seen, not the first.
        assert_eq!(
            history.observe(NodePressure::default(), at(399), period),
            under
        );
        assert_eq!(
            history.observe(NodePressure::default(), at(400), period),
            NodePressure::default()
        );
        // A zero period follows the signal exactly.
        let mut history = PressureHistory::default();
        assert_eq!(history.observe(under, at(0), Duration::ZERO), under);
        assert_eq!(
            history.observe(NodePressure::default(), at(0), Duration::ZERO),
            NodePressure::default()
        );
    }

    #[test]
    fn allocatable_subtracts_reservations_and_eviction_thresholds() {
        let capacity = BTreeMap::from([
            ("cpu".to_owned(), q("2")),
            ("memory".to_owned(), q("24684084Ki")),
            ("ephemeral-storage".to_owned(), q("1000")),
            ("pods".to_owned(), q("110")),
            ("hugepages-2Mi".to_owned(), q("4Mi")),
            ("example.com/dongle".to_owned(), q("bad quantity")),
        ]);
        let reserved =
            BTreeMap::from([("cpu".to_owned(), q("3")), ("memory".to_owned(), q("1Mi"))]);
        let allocatable = allocatable(&capacity, &reserved, &EvictionThresholds::default());
        // Never below zero, in the capacity's format.
        assert_eq!(allocatable["cpu"], q("0"));
        // 24684084Ki - 1Mi reserved - 100Mi threshold - 4Mi of huge pages.
        assert_eq!(allocatable["memory"], q("24576564Ki"));
        assert_eq!(allocatable["ephemeral-storage"], q("900"));
        assert_eq!(allocatable["pods"], q("110"));
        assert_eq!(allocatable["hugepages-2Mi"], q("4Mi"));
        assert_eq!(allocatable["example.com/dongle"], q("bad quantity"));
    }

    #[test]
    fn the_fake_reports_what_it_is_given() {
        let fake = FakeNodeResources::new(BTreeMap::from([("cpu".to_owned(), q("1"))]), healthy());
        assert_eq!(fake.capacity()["cpu"], q("1"));
        assert_eq!(fake.stats().unwrap(), healthy());
        fake.fail("broken");
        assert!(matches!(fake.stats(), Err(HostError::Invalid { .. })));
        fake.update(|stats| stats.memory.available_bytes = 1);
        assert_eq!(fake.stats().unwrap().memory.available_bytes, 1);
        assert_eq!(fake.stats().unwrap().pids, PidStats::default());
        fake.set_stats(healthy());
        assert_eq!(fake.stats().unwrap(), healthy());
    }
}
