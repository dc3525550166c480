//! Network backends for Orchestra.
//!
//! `orchestra-core` defines the network seams: `PodNetwork` (CNI-shaped: attach and detach a pod
//! sandbox, returning its addresses), `ServiceProxy` (kube-proxy-shaped: converge on the whole table
//! of service addresses and their ready endpoints) and `NameResolver` (the cluster DNS records).
//! This crate will hold their backends:
//!
//! - loopback pod addressing (each pod its own `127.x` address) and CNI pod networking through the
//!   CNI plugins installed on the host;
//! - a userspace layer-4 service proxy and an nftables service proxy;
//! - a DNS server answering `name.namespace.svc.cluster.local`.
//!
//! **Status:** nothing is implemented here yet; these backends arrive with the node and service
//! issues. The crate exists now so that the workspace layout and the dependency rule hold from the
//! start.
#![doc(test(attr(deny(warnings))))]
