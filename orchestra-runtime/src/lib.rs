//! Container runtime backends for Orchestra.
//!
//! The node agent runs the pods bound to its node through the CRI-shaped
//! [`ContainerRuntime`](orchestra_core::container_runtime::ContainerRuntime) seam defined in
//! `orchestra-core` (pod sandboxes, containers, logs, images). This crate holds the backends
//! behind that seam, each behind a cargo feature:
//!
//! - [`process`] (feature `process`, on by default): the daemonless, pod-native process runtime
//!   in the spirit of rkt's fly stage — each container a supervised process in its own process
//!   group, run from its image's root filesystem when the image is in the node's image store
//!   (chrooted into an overlay of its own when root) and on the host's filesystem otherwise,
//!   its output in CRI-format log files; it serves CRI's `ImageService` from its image store too;
//! - **youki/libcontainer**: runc-style OCI containers with namespaces and cgroups (to come);
//! - **Docker**, through the engine's API (to come);
//!
//! and image handling: [`image`] (feature `image`, on by default) is the node's image store —
//! OCI-layout and `docker save` tarballs imported and unpacked to root filesystems that a runtime
//! runs containers from — and pull from a registry is to come.
//!
//! [`host`] (feature `host`, on by default) reads the node's capacity and the figures behind its
//! pressure conditions from the Linux host, for the node agent's heartbeat.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "image")]
pub mod image;
#[cfg(feature = "process")]
pub mod process;
