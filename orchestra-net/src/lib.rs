//! Network backends for Orchestra.
//!
//! `orchestra-core` defines the network seams: [`PodNetwork`](orchestra_core::pod_network::PodNetwork)
//! (CNI-shaped: attach and detach a pod sandbox, returning its addresses), `ServiceProxy`
//! (kube-proxy-shaped: converge on the whole table of service addresses and their ready
//! endpoints) and `NameResolver` (the cluster DNS records). This crate holds their backends, each
//! behind a cargo feature:
//!
//! - [`loopback`] (feature `loopback`, on by default): the embedded pod network — each pod its
//!   own `127.x.y.z` address out of a range of `127.0.0.0/8` (`127.10.0.0/16` by default), no
//!   root needed, allocations kept in a state directory;
//! - CNI pod networking through the CNI plugins installed on the host (to come);
//! - a userspace layer-4 service proxy and an nftables service proxy (to come);
//! - a DNS server answering `name.namespace.svc.cluster.local` (to come).
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "loopback")]
pub mod loopback;
