//! Container runtime backends for Orchestra.
//!
//! The node agent runs the pods bound to its node through a CRI-shaped `ContainerRuntime` seam
//! defined in `orchestra-core` (pod sandboxes, containers, logs, images). This crate will hold the
//! backends behind that seam, each behind a cargo feature:
//!
//! - the **process runtime**: daemonless and pod-native, in the spirit of rkt's fly stage;
//! - **youki/libcontainer**: runc-style OCI containers with namespaces and cgroups;
//! - **Docker**, through the engine's API;
//!
//! and image handling: import of OCI-layout and docker-archive tarballs, and pull from a registry.
//!
//! **Status:** nothing is implemented here yet; the runtime seam and the process runtime arrive with
//! issue 7. The crate exists now so that the workspace layout and the dependency rule hold from the
//! start.
#![doc(test(attr(deny(warnings))))]
