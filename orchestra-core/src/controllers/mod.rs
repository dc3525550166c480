//! The reference controllers: the controller manager of the brief, written as users of the SDK
//! would write their own controllers, on [`crate::api`] and [`crate::runtime`].
//!
//! | controller | keeps |
//! |---|---|
//! | [`replica_set`] | exactly `replicas` pods for each ReplicaSet and ReplicationController |
//! | [`deployment`] | a ReplicaSet per pod template, rolled out as the strategy says |
//! | [`endpoints`] | each Service's Endpoints: its ready and not-ready pods |
//! | [`service_account`] | a `default` ServiceAccount in every namespace |
//! | [`token`] | the control plane's signing key and bound service-account tokens |
//! | [`namespace`] | a deleted namespace emptied, then removed |
//! | [`garbage_collector`] | objects whose owners are gone deleted, as their propagation policy says |
//! | [`node_lifecycle`] | nodes whose agent stopped heartbeating marked unreachable, and their pods evicted |
//! | [`manager`] | (all of the above) runs the controllers together, optionally leader-elected |
//! | [`expectations`] | (shared by the workload controllers) the creations and deletions each controller waits to see |
//!
//! Each runs on its own (`run` until a shutdown future resolves) or all together in the
//! [`manager::ControllerManager`], chosen by name as kube-controller-manager's `--controllers`
//! flag chooses them. [`pods`] holds what several of them know about pods (readiness,
//! availability, controller references, which pod to delete first).

pub mod cluster_role_aggregation;
pub mod deployment;
pub mod endpoints;
pub mod expectations;
pub mod garbage_collector;
pub mod manager;
pub mod namespace;
pub mod node_lifecycle;
pub mod pods;
pub mod replica_set;
pub mod root_ca_publisher;
pub mod service_account;
pub mod token;
