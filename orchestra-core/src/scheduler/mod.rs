//! The scheduler: places pods that have no node on nodes that can run them.
//!
//! In a cluster, the scheduler watches pods whose `spec.nodeName` is empty, picks for each a node
//! with room for its requests and that satisfies its constraints, and binds the pod to it through
//! the `pods/binding` subresource — the same job as kube-scheduler, with the same extension
//! points, so that users plug in their own rules.
//!
//! [`Scheduler`] is the running scheduler (module [`service`]): it watches pods and nodes,
//! schedules one pod at a time and binds in the background, records events and conditions, and
//! optionally runs only while leader. Everything it is made of stands alone, pure logic with no
//! I/O, for embedding programs that want their own loop:
//!
//! - [`resources`]: resource amounts in the scheduler's integer units and a pod's effective
//!   request ([`pod_requests`](resources::pod_requests)), with Kubernetes' rules for init
//!   containers, sidecars and overhead;
//! - [`node_info`]: [`NodeInfo`](node_info::NodeInfo), a node with its pods, requested resources,
//!   host ports, label counts and anti-affinity groups, updated incrementally;
//! - [`cache`]: [`SchedulerCache`](cache::SchedulerCache), the nodes and the assigned and
//!   assumed pods maintained from informers, and the per-cycle [`Snapshot`](cache::Snapshot) of
//!   node infos, updated by copying only the nodes that changed;
//! - [`queue`]: the scheduling queue, [`PriorityQueue`](queue::PriorityQueue): pending pods in
//!   priority order, back-off after failures, unschedulable pods parked until a cluster event
//!   may help them;
//! - [`framework`]: the extension points as traits ([`FilterPlugin`](framework::FilterPlugin),
//!   [`ScorePlugin`](framework::ScorePlugin), [`PostFilterPlugin`](framework::PostFilterPlugin),
//!   [`BindPlugin`](framework::BindPlugin), ...), [`Status`](framework::Status),
//!   [`CycleState`](framework::CycleState) and [`Profile`](framework::Profile);
//! - [`plugins`]: kube-scheduler's built-in plugins and the default profile;
//! - [`preemption`]: DefaultPreemption, the PostFilter that picks victims by priority;
//! - [`schedule_one`]: one cycle — PreFilter, Filter over `percentageOfNodesToScore` of the nodes,
//!   Score, the choice of a node — and Kubernetes' `0/N nodes are available: ...` diagnosis;
//! - [`event_handlers`]: informer events into the cache and the queue;
//! - [`metrics`]: attempts by outcome and their durations.
//!
//! Not yet there (Kubernetes has them): volume plugins and ImageLocality, nominated pods taken into
//! account by other pods' filters (a preempting pod waits for its victims, but a lower-priority
//! pod may take the room first), PodDisruptionBudgets in preemption, the Permit and PreBind
//! extension points, the `SchedulingGated` condition on gated pods (they are held back, but not
//! marked), system default topology spreading.

pub mod cache;
pub mod event_handlers;
pub mod framework;
pub mod metrics;
pub mod node_info;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod service;

pub use service::{Scheduler, SchedulerConfig, SchedulerError};
