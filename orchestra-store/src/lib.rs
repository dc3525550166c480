//! Store backends for Orchestra.
//!
//! The control plane keeps every object in a [store]: an etcd-shaped, revisioned key-value space
//! with transactions, watches, leases and compaction. `orchestra-core` defines that seam (the
//! [`Store`](orchestra_core::store::Store) trait) and its in-memory reference backend; this crate
//! holds the durable backends:
//!
//! - [`embedded`], the default: durable and crash-safe in one data folder, with no daemon — the
//!   in-memory engine of `orchestra-core` made durable by a write-ahead log with group commit,
//!   checkpoints, backups and restores;
//! - `etcd` (cargo feature `etcd`), for clusters of API servers over an etcd cluster: the store
//!   trait mapped one to one onto etcd's v3 API.
//!
//! Every backend passes the store conformance suite exported by `orchestra-core`
//! (`cargo test -p orchestra-store --test conformance`), and the embedded store a crash test that
//! kills a writer with SIGKILL fifty times (`--test crash`).
//!
//! [store]: https://kubernetes.io/docs/concepts/overview/components/#etcd
#![doc(test(attr(deny(warnings))))]

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
