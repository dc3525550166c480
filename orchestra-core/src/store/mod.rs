//! The store seam: an etcd-shaped, revisioned key-value store that holds every object.
//!
//! The control plane keeps its state in a [`Store`]. The trait is shaped after etcd's v3 API, so
//! that etcd itself is one backend and the embedded durable store and the in-memory
//! [`MemoryStore`] are others, all interchangeable under the typed `Api`:
//!
//! - **Revisions.** The store has one logical clock, its revision, which every write (a put, a
//!   delete, a transaction with writes, a lease expiring with keys attached) advances by exactly
//!   one; a write changes any number of keys *at* its revision. Every key carries the revision it
//!   was created at ([`KeyValue::create_revision`]), the revision of its last change
//!   ([`KeyValue::mod_revision`], which Kubernetes calls the object's `resourceVersion`) and how
//!   many times it changed since creation ([`KeyValue::version`]).
//! - **Reads** ([`Store::range`]) see one key, a prefix or a key range, either now or as it was at
//!   an earlier revision that is still retained, with an optional limit.
//! - **Transactions** ([`Store::txn`]) compare keys' revisions, versions or values and then apply
//!   one list of operations or another, atomically at one revision.
//! - **Watches** ([`Store::watch`]) stream every change to a key or range from a revision on.
//! - **Leases** ([`Store::lease_grant`]) expire after their time to live unless kept alive; the
//!   keys attached to a lease are deleted when it expires or is revoked.
//! - **Compaction** ([`Store::compact`]) forgets the history before a revision.
//!
//! # The contract
//!
//! Every backend keeps these promises; the conformance suite (the module `store::testing`, behind
//! the cargo feature `testing`) checks them:
//!
//! 1. A fresh store is at revision 1 and holds no key; the first write is revision 2.
//! 2. Every successful write advances the revision by exactly one and is visible to every read
//!    that starts after it returns (linearizable); reads, failed compares and transactions that
//!    change nothing (only reads, or deletes that found no key) do not advance it, as in etcd.
//! 3. A watch from revision `r` delivers every change with revision `>= r` to the keys it covers,
//!    in revision order, each exactly once, with all the changes of one revision in the same
//!    [`WatchResponse`], and it keeps delivering until it is dropped. Every watcher of the same keys
//!    sees the same events. When the watch cannot be served because revision `r` (or a revision it
//!    has not yet delivered) was compacted, the stream yields [`StoreError::Compacted`] and ends.
//! 4. When a call returns `Ok`, its effect is as durable as the backend promises: [`MemoryStore`]
//!    promises nothing across a restart; durable backends promise that an acknowledged write
//!    survives a crash.
//! 5. Time (lease expiry, progress notifications) is measured with [`tokio::time`], so tests can
//!    pause and advance it.
//!
//! # Errors
//!
//! Every call returns [`StoreError`]: [`StoreError::Compacted`] for a revision that is gone (and,
//! as etcd answers, for a compaction to a revision at or before the last compaction's),
//! [`StoreError::FutureRevision`] for one that does not exist yet, [`StoreError::LeaseNotFound`]
//! for an unknown or expired lease, [`StoreError::InvalidRequest`] for a request the store cannot
//! take (a key written twice in one transaction, an empty key, a zero lease time to live),
//! and [`StoreError::Unavailable`] when the backend cannot be reached or failed; the last is the
//! only one a caller may retry blindly.

pub mod journal;
mod memory;
#[cfg(feature = "testing")]
pub mod testing;

pub use memory::MemoryStore;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// A point in the store's history (etcd's revision; Kubernetes' `resourceVersion`).
pub type Revision = i64;

/// The id of a lease.
pub type LeaseId = i64;

/// A stored key and what the store knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The revision at which the key was created (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the key's last change.
    pub mod_revision: Revision,
    /// How many times the key was written since it was created (1 after the creating write).
    pub version: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// Which keys a request covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// One key.
    Key(String),
    /// Every key that starts with the prefix.
    Prefix(String),
    /// Every key `k` with `start <= k < end`.
    Range {
        /// First key covered.
        start: String,
        /// First key not covered.
        end: String,
    },
}

impl KeyRange {
    /// Whether `key` is covered.
    pub fn contains(&self, key: &str) -> bool {
        match self {
            KeyRange::Key(only) => key == only,
            KeyRange::Prefix(prefix) => key.starts_with(prefix.as_str()),
            KeyRange::Range { start, end } => start.as_str() <= key && key < end.as_str(),
        }
    }

    /// The first key that could be covered.
    pub fn start(&self) -> &str {
        match self {
            KeyRange::Key(key) | KeyRange::Prefix(key) => key,
            KeyRange::Range { start, .. } => start,
        }
    }
}

/// A read of a key or range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    /// What to read.
    pub range: KeyRange,
    /// Read the keys as they were at this revision (`None`: now). Reading a compacted revision is
    /// [`StoreError::Compacted`]; a future one [`StoreError::FutureRevision`].
    pub revision: Option<Revision>,
    /// Return at most this many keys, in key order (`None`: all).
    pub limit: Option<usize>,
    /// Only count the keys; return none.
    pub count_only: bool,
}

impl RangeRequest {
    /// A read of everything in `range`, now.
    pub fn new(range: KeyRange) -> RangeRequest {
        RangeRequest {
            range,
            revision: None,
            limit: None,
            count_only: false,
        }
    }

    /// A read of one key, now.
    pub fn key(key: impl Into<String>) -> RangeRequest {
        RangeRequest::new(KeyRange::Key(key.into()))
    }

    /// A read of every key with a prefix, now.
    pub fn prefix(prefix: impl Into<String>) -> RangeRequest {
        RangeRequest::new(KeyRange::Prefix(prefix.into()))
    }

    /// This read at a past revision.
    #[must_use]
    pub fn at(mut self, revision: Revision) -> RangeRequest {
        self.revision = Some(revision);
        self
    }

    /// This read with a limit.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> RangeRequest {
        self.limit = Some(limit);
        self
    }
}

/// What a read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, in key order (none when counting only).
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than the limit let through.
    pub more: bool,
    /// How many keys matched in all.
    pub count: usize,
    /// The revision the read saw (the store's revision at the time, or the one asked for).
    pub revision: Revision,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's mod revision (0 when the key does not exist).
    ModRevision(Revision),
    /// The key's create revision (0 when the key does not exist).
    CreateRevision(Revision),
    /// The key's version (0 when the key does not exist).
    Version(i64),
    /// The key's value, compared byte-wise. A compare of a missing key's value never holds,
    /// whatever the operator (as in etcd).
    Value(Bytes),
    /// The key's lease (0 when none or when the key does not exist).
    Lease(LeaseId),
}

/// How a compare compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// The key's attribute equals the target.
    Equal,
    /// The key's attribute differs from the target.
    NotEqual,
    /// The key's attribute is greater than the target.
    Greater,
    /// The key's attribute is less than the target.
    Less,
}

/// One condition of a transaction, on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// How.
    pub op: CompareOp,
    /// With what.
    pub target: CompareTarget,
}

impl Compare {
    /// The key's mod revision equals `revision` (0: the key does not exist).
    pub fn mod_revision(key: impl Into<String>, revision: Revision) -> Compare {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Compare {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        }
    }

    /// The key exists.
    pub fn present(key: impl Into<String>) -> Compare {
        Compare {
            key: key.into(),
            op: CompareOp::Greater,
            target: CompareTarget::CreateRevision(0),
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write a key, attached to a lease or not.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// The lease to attach the key to (which must exist).
        lease: Option<LeaseId>,
    },
    /// Delete a key or range.
    Delete(KeyRange),
    /// Read, as of the transaction's revision: a read of the present sees the writes of the
    /// operations before it in the same transaction (as in etcd).
    Range(RangeRequest),
}

impl Op {
    /// A put with no lease.
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A delete of one key.
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete(KeyRange::Key(key.into()))
    }
}

/// A transaction: if every compare holds, the success operations, otherwise the failure ones,
/// all at one revision. A key may be written (put or deleted) at most once per branch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// The conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// What to do when they hold.
    pub success: Vec<Op>,
    /// What to do otherwise.
    pub failure: Vec<Op>,
}

impl Txn {
    /// A transaction with these conditions and nothing to do yet.
    pub fn when(compares: impl IntoIterator<Item = Compare>) -> Txn {
        Txn {
            compares: compares.into_iter().collect(),
            ..Txn::default()
        }
    }

    /// What to do when the conditions hold.
    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.success = ops.into_iter().collect();
        self
    }

    /// What to do otherwise.
    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.failure = ops.into_iter().collect();
        self
    }
}

/// What one operation of a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResponse {
    /// A put: the key as it was before, if it existed.
    Put {
        /// The previous key-value.
        prev_kv: Option<KeyValue>,
    },
    /// A delete: the keys deleted, as they were.
    Delete {
        /// The deleted key-values.
        deleted: Vec<KeyValue>,
    },
    /// A read.
    Range(RangeResponse),
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (and the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction: the transaction's own if it wrote anything.
    pub revision: Revision,
    /// One response per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// A watch of a key or range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// What to watch.
    pub range: KeyRange,
    /// The first revision to deliver (`None`: the next write).
    pub start_revision: Option<Revision>,
    /// Send a progress notification (a [`WatchResponse`] with no events and `progress` set) after
    /// this long without events.
    pub progress_notify: Option<Duration>,
    /// Include each key's previous value in its events.
    pub prev_kv: bool,
}

impl WatchRequest {
    /// A watch of `range` from the next write.
    pub fn new(range: KeyRange) -> WatchRequest {
        WatchRequest {
            range,
            start_revision: None,
            progress_notify: None,
            prev_kv: false,
        }
    }

    /// This watch from `revision` on.
    #[must_use]
    pub fn from(mut self, revision: Revision) -> WatchRequest {
        self.start_revision = Some(revision);
        self
    }

    /// This watch with progress notifications after `interval` without events.
    #[must_use]
    pub fn progress(mut self, interval: Duration) -> WatchRequest {
        self.progress_notify = Some(interval);
        self
    }

    /// This watch with previous values.
    #[must_use]
    pub fn with_prev_kv(mut self) -> WatchRequest {
        self.prev_kv = true;
        self
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was written (created or changed).
    Put,
    /// The key was deleted (by a delete, a revoked or expired lease).
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with an empty value, its last create
    /// revision and version 0, and `mod_revision` the revision of the delete.
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// What a watch delivers: the changes of one or more whole revisions, or a progress notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchResponse {
    /// For events, the revision of the last one; for a progress notification, a revision up to
    /// which the watch has delivered every change.
    pub revision: Revision,
    /// The changes, in revision order (and, within a revision, in the order the write made them).
    pub events: Vec<Event>,
    /// Whether this is a progress notification (a bookmark) with no events.
    pub progress: bool,
}

/// A stream of watch responses: see the [module documentation](self) for what it promises.
pub type WatchStream = BoxStream<'static, Result<WatchResponse, StoreError>>;

/// A lease just granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// Its time to live.
    pub ttl: Duration,
}

/// What a store call can fail with; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The revision asked for was compacted: history before `compact_revision` is gone.
    #[error("revision {revision} has been compacted (history starts at {compact_revision})")]
    Compacted {
        /// The revision asked for.
        revision: Revision,
        /// The oldest revision still retained.
        compact_revision: Revision,
    },
    /// The revision asked for does not exist yet.
    #[error("revision {revision} is a future revision (the store is at {current})")]
    FutureRevision {
        /// The revision asked for.
        revision: Revision,
        /// The store's revision.
        current: Revision,
    },
    /// The lease does not exist (never granted, revoked or expired).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The request cannot be taken as it is.
    #[error("invalid store request: {0}")]
    InvalidRequest(String),
    /// The backend could not be reached or failed; the call may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store seam: an etcd-shaped, revisioned key-value store. See the
/// [module documentation](self) for the contract every implementation keeps.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads a key or range, now or at a retained revision.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse>;

    /// Runs a transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Watches a key or range from a revision on. The stream is ready to deliver when this returns:
    /// a write that starts after the call returns is delivered. A start revision later than the
    /// next write's is [`StoreError::FutureRevision`]; a compacted one gives a stream whose first
    /// item is [`StoreError::Compacted`], after which it ends.
    async fn watch(&self, request: WatchRequest) -> Result<WatchStream>;

    /// Grants a lease with a time to live (rounded up to whole seconds by backends that count in
    /// seconds, as etcd does).
    async fn lease_grant(&self, ttl: Duration) -> Result<Lease>;

    /// Renews a lease for another whole time to live; returns that time to live.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration>;

    /// Revokes a lease now, deleting the keys attached to it (in one revision, if any).
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;

    /// The time a lease has left, or [`StoreError::LeaseNotFound`].
    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration>;

    /// Forgets the history before `revision`: reads and watches at earlier revisions fail with
    /// [`StoreError::Compacted`]. The state at `revision` and after is kept. Compacting to a
    /// revision at or before the last compaction's is [`StoreError::Compacted`], to a future one
    /// [`StoreError::FutureRevision`] (as in etcd).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision the store is at.
    async fn current_revision(&self) -> Result<Revision>;

    /// Reads one key now.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self
            .range(RangeRequest::key(key))
            .await?
            .kvs
            .into_iter()
            .next())
    }

    /// Writes one key unconditionally; returns the write's revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        Ok(self
            .txn(Txn::default().and_then([Op::put(key, value)]))
            .await?
            .revision)
    }

    /// Deletes one key unconditionally; returns the store's revision after it.
    async fn delete(&self, key: &str) -> Result<Revision> {
        Ok(self
            .txn(Txn::default().and_then([Op::delete(key)]))
            .await?
            .revision)
    }
}
