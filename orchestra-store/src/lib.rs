//! Store backends for Orchestra.
//!
//! The control plane keeps every object in a [store]: an etcd-shaped, revisioned key-value space
//! with transactions, watches, leases and compaction. `orchestra-core` defines that seam and ships
//! the in-memory reference backend; this crate will hold the durable backends that implement it:
//!
//! - the **embedded store**, the default: durable and crash-safe in one data folder, with no daemon;
//! - the **etcd store** (cargo feature `etcd`), for clusters of API servers over an etcd cluster.
//!
//! Both will pass the store conformance suite exported by `orchestra-core`.
//!
//! **Status:** nothing is implemented here yet; the store seam arrives with issue 3 and these
//! backends with issue 4. The crate exists now so that the workspace layout and the dependency rule
//! (backends depend on `orchestra-core`, never the reverse) hold from the start.
//!
//! [store]: https://kubernetes.io/docs/concepts/overview/components/#etcd
#![doc(test(attr(deny(warnings))))]

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
