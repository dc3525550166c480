//! The taint keys Kubernetes itself puts on nodes (`k8s.io/api/core/v1/well_known_taints.go`).
//!
//! The node lifecycle controller adds the not-ready and unreachable ones, the scheduler's
//! `NodeUnschedulable` plugin tolerates the unschedulable one, and the `DefaultTolerationSeconds`
//! admission plugin gives pods time-limited tolerations of the first two.

/// A node whose agent reports `Ready=False`.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";

/// A node whose agent stopped heartbeating (its `Ready` condition is `Unknown`).
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// A node cordoned with `spec.unschedulable`.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// A node reporting `MemoryPressure=True`.
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";

/// A node reporting `DiskPressure=True`.
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";

/// A node reporting `PIDPressure=True`.
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";

/// A node whose network is not configured (`NetworkUnavailable=True`).
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
