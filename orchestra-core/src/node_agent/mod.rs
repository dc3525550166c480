//! The node agent (the kubelet of Orchestra): it registers its node, heartbeats, and runs the pods
//! bound to the node through a [`ContainerRuntime`](crate::container_runtime::ContainerRuntime).
//!
//! Being built with issue 7. What is here:
//!
//! - [`pod_status`]: the pod status the agent reports (phase, conditions, container statuses),
//!   computed from what the runtime says, as kubelet computes it;
//! - [`backoff`]: the crash-loop back-off between restarts of a failing container;
//! - [`environment`]: a container's environment (downward API, ConfigMaps, Secrets, `$(VAR)`)
//!   and the runtime config made from its spec;
//! - [`heartbeat`]: registering the node, renewing its Lease, posting its conditions;
//! - [`pod_worker`]: running one pod through the runtime — sandbox, init containers in order,
//!   containers, restarts after the back-off, termination with the grace period;
//! - [`service_account`]: the projected service-account token volumes — tokens asked for,
//!   written, refreshed and removed with their pods;
//! - [`probe`]: liveness, readiness and startup probes (`exec`, `tcpSocket`, `httpGet`) with
//!   kubelet's thresholds, the startup gate and the kill after a liveness failure.
//!
//! - [`agent`]: [`NodeAgent`](agent::NodeAgent), the loop over all of it: heartbeats, the pods
//!   bound to the node watched and synced, statuses written, deleted pods stopped with their grace
//!   period and removed, what a previous agent left running adopted.
//!
//! Still to come: resource limits, and images.

pub mod agent;
pub mod backoff;
pub mod environment;
pub mod heartbeat;
pub mod host;
pub mod pod_status;
pub mod pod_worker;
pub mod probe;
pub mod service_account;
