//! Journaling: how a durable backend makes the in-memory store survive a restart.
//!
//! A durable store (the embedded store of `orchestra-store`) is the in-memory [`MemoryStore`]
//! engine with a [`Journal`] attached: every change the engine makes becomes a [`Record`], handed
//! to the journal in the engine's order, and the engine makes a change visible (to reads, watches
//! and the call that made it) only once the journal says it is durable. On restart, the backend
//! rebuilds the engine from an [`Image`] (a checkpoint) and the records written after it.
//!
//! The journal does the I/O; this module only defines what crosses the seam, so that
//! `orchestra-core` stays free of I/O.
//!
//! [`MemoryStore`]: super::MemoryStore

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{Event, LeaseId, Revision};

/// One change of the store, in the order the store made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The changes of one revision: a transaction's, or the deletions of a revoked or expired
    /// lease's keys. Events carry no previous values (the store knows them).
    Revision {
        /// The revision.
        revision: Revision,
        /// Its events, in order.
        events: Vec<Event>,
    },
    /// A lease granted or renewed.
    Lease(LeaseImage),
    /// A lease revoked or expired (the deletions of its keys come in the record before).
    LeaseEnd(LeaseId),
    /// The history before this revision forgotten.
    Compact(Revision),
}

/// A lease as a checkpoint or a record keeps it: its time to live counts from `renewed_at`, a
/// wall-clock time, so that a lease whose time ran out while the store was down is expired when
/// it opens again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseImage {
    /// The lease's id.
    pub id: LeaseId,
    /// Its time to live.
    pub ttl: Duration,
    /// When it was granted or last renewed.
    pub renewed_at: SystemTime,
}

/// One retained version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionImage {
    /// The key.
    pub key: String,
    /// The revision of this version.
    pub mod_revision: Revision,
    /// The revision the key was created at.
    pub create_revision: Revision,
    /// The key's version (0 for a deletion).
    pub version: i64,
    /// The lease the key was attached to.
    pub lease: Option<LeaseId>,
    /// The value; `None` for a deletion.
    pub value: Option<Bytes>,
    /// The position of this change among the changes of its revision.
    pub ordinal: u32,
}

/// Everything a store holds, as of one moment: a checkpoint, or a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The store's revision.
    pub revision: Revision,
    /// The revision of the last compaction (0: none).
    pub compacted: Revision,
    /// The next lease id to grant.
    pub next_lease: LeaseId,
    /// Every retained version of every key, in key order, then revision order.
    pub versions: Vec<VersionImage>,
    /// Every lease.
    pub leases: Vec<LeaseImage>,
}

/// Where a journaled store sends its records. Implementations write them durably, in order,
/// batching as they like (group commit), and then tell the store through the [`Publisher`] they
/// were given.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// Queues a record. Called in the store's order, with the store locked: it must not block on
    /// I/O. Returns the record's sequence number (increasing).
    fn append(&self, record: Record) -> u64;

    /// Resolves once every record up to `sequence` is durable and published, or with the reason
    /// the journal failed (after which nothing more becomes durable).
    fn durable(&self, sequence: u64) -> BoxFuture<'static, Result<(), String>>;
}

/// What a journal calls to make durable changes visible: the store's revision becomes at least
/// `revision`, waking its watches. Cheap to clone; it does not keep the store alive.
#[derive(Clone)]
pub struct Publisher {
    pub(super) publish: std::sync::Arc<dyn Fn(Revision) + Send + Sync>,
}

impl Publisher {
    /// Makes every change up to `revision` visible (call it once they are durable, in order).
    pub fn publish(&self, revision: Revision) {
        (self.publish)(revision);
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Publisher")
    }
}

/// A checkpoint or a journal that cannot be replayed: it contradicts itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the store's image or journal is inconsistent: {0}")]
pub struct ReplayError(pub String);
