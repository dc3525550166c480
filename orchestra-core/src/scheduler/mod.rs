//! The scheduler: places pods that have no node on nodes that can run them.
//!
//! In a cluster, the scheduler watches pods whose `spec.nodeName` is empty, picks for each a node
//! with room for its requests and that satisfies its constraints, and binds the pod to it through
//! the `pods/binding` subresource — the same job as kube-scheduler, with the same extension
//! points, so that users plug in their own rules.
//!
//! What this module holds so far is the pure logic, with no I/O and no tasks:
//!
//! - [`resources`]: resource amounts in the scheduler's integer units and a pod's effective
//!   request ([`pod_requests`](resources::pod_requests)), with Kubernetes' rules for init
//!   containers, sidecars and overhead;
//! - [`node_info`]: [`NodeInfo`](node_info::NodeInfo), a node with its pods, requested resources
//!   and host ports, updated incrementally;
//! - [`cache`]: [`SchedulerCache`](cache::SchedulerCache), the nodes and the assigned and
//!   assumed pods maintained from informers, and the per-cycle [`Snapshot`](cache::Snapshot) of
//!   node infos, updated by copying only the nodes that changed;
//! - [`framework`]: the extension points as traits ([`FilterPlugin`](framework::FilterPlugin),
//!   [`ScorePlugin`](framework::ScorePlugin), ...), [`Status`](framework::Status),
//!   [`CycleState`](framework::CycleState) and [`Profile`](framework::Profile);
//! - [`plugins`]: kube-scheduler's built-in filter and score plugins NodeName, NodeUnschedulable,
//!   NodeResourcesFit (LeastAllocated and MostAllocated), NodeResourcesBalancedAllocation,
//!   NodePorts, NodeAffinity and TaintToleration, and the default profile built from them.
//! - [`queue`]: the scheduling queue, [`PriorityQueue`](queue::PriorityQueue): pending pods in
//!   priority order, back-off after failures, unschedulable pods parked until a cluster event
//!   may help them.
//!
//! What comes next: the scheduling loop itself — fed by informers into the queue and the cache,
//! `percentageOfNodesToScore`, Reserve/Bind through the binding subresource, events and the
//! `PodScheduled` condition — then the InterPodAffinity and PodTopologySpread plugins and
//! preemption.

pub mod cache;
pub mod event_handlers;
pub mod metrics;
pub mod framework;
pub mod node_info;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod service;
pub mod preemption;

pub use service::{Scheduler, SchedulerConfig, SchedulerError};
