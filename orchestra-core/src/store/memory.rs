//! The in-memory reference store: [`MemoryStore`] (its documentation tells the design).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::{Bound, Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::journal::{Image, Journal, LeaseImage, Publisher, Record, ReplayError, VersionImage};
use super::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyRange, KeyValue, Lease, LeaseId, Op,
    OpResponse, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, Txn, TxnResponse,
    WatchRequest, WatchResponse, WatchStream,
};

/// A watch response grows past this many events only to keep a revision whole.
const MAX_EVENTS_PER_RESPONSE: usize = 1024;

/// A watch poll reads at most this many log entries under the lock at a time.
const MAX_ENTRIES_PER_POLL: usize = 1024;

/// The in-memory reference [`Store`]: etcd's semantics (revisions, MVCC history, transactions,
/// watches, leases, compaction) with no durability.
///
/// `MemoryStore` keeps the whole history of every key in memory, as etcd's MVCC layer does, and
/// serves the [`Store`] contract from it. It is the store of unit tests and simulations, and the
/// reference the durable backends are measured against; it is sized for a control plane of
/// 150,000 objects, thousands of writes per second and a thousand open watches.
///
/// A fresh store is at revision 1 and its first write is revision 2, as in etcd. Reads and
/// watches at a revision before the last compaction fail with [`StoreError::Compacted`], after
/// the current one with [`StoreError::FutureRevision`]; a revision below 1 is an
/// [`StoreError::InvalidRequest`]. A lease's time to live is kept exactly (not rounded to
/// seconds). `MemoryStore` is cheap to clone: clones share one store.
///
/// Watch streams need a tokio runtime with its timer enabled (they sleep until lease deadlines
/// and progress notifications).
///
/// # Design
///
/// One [`RwLock`] guards the state; no call holds it across an `.await`, and every call is over
/// once it returns (none waits on I/O). Reads (ranges, watch polls) share the lock; writes
/// (transactions, lease calls, compaction) take it alone, briefly.
///
/// - **Keys.** A `BTreeMap` from key to its *history*: every version the key had since the last
///   compaction, each with its create and mod revision, version, lease and value, a deletion being
///   a tombstone version. The last version sits inline in the map and the older ones in a vector
///   beside it, so a read of the present (or a count) walks the map's nodes only, and a read at
///   revision `r` looks further (a binary search) only for keys changed after `r`. Values are
///   [`Bytes`], so a read shares them rather than copying.
/// - **Writes.** A transaction evaluates its compares against the current state, checks the branch
///   that runs (leases exist, read revisions are retained), then applies its operations at the
///   next revision. Only a transaction that changes something (a put, or a delete that found a
///   key) takes a revision, as in etcd; a range inside a transaction sees the writes of the
///   operations before it, as in etcd.
/// - **The event log.** Each revision's events are kept, in order, in one shared log (a
///   `VecDeque` indexed by revision) until compaction drops them. Watches buffer nothing of their
///   own: a watch stream is a cursor (the next revision it owes) and a key range. When it is
///   polled it reads, under the shared lock, the log entries from its cursor on (cloning `Arc`s,
///   never events), then filters them outside the lock and answers with every matching event of
///   one or more *whole* revisions (about a thousand events at most, unless one revision has
///   more). Writers wake the waiting streams through a
///   [`tokio::sync::watch`] channel carrying the revision. So a thousand watchers cost a thousand
///   cursors, every watcher of the same keys sees the same events, and a dropped stream leaves
///   nothing behind. A stream whose cursor falls behind the compaction revision yields
///   [`StoreError::Compacted`] and ends. History (key versions and the log) is kept until a
///   compaction, as in etcd: a long-running control plane compacts periodically.
/// - **Compaction** to revision `c` drops the log entries before `c` and, for the keys those
///   entries touched, every version superseded at `c` (a key deleted at or before `c` goes
///   altogether). Its cost is that of the history it drops, not of the whole key space.
/// - **Leases** have a deadline measured with [`tokio::time::Instant`] (so paused tokio time drives
///   them in tests). The store spawns no task (the house rule: library code never spawns a task it
///   does not hand back). Instead, expiry happens lazily but on time:
///   1. every store call first expires the leases whose deadline has passed, and
///   2. every open watch stream, while it waits, also sleeps until the earliest lease deadline
///      (published to the streams through a second `watch` channel) and then expires the due
///      leases itself,
///
///   so an expiry is observable at its deadline through any call or any open watch, even when
///   no one calls the store. Expiring a lease has the effect of revoking it: the keys attached to
///   it are deleted, at one new revision per lease (leases that expire together are expired one
///   after another, in deadline order), and a lease with no keys left takes no revision.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use futures_util::StreamExt;
/// use orchestra_core::store::{
///     Compare, EventKind, KeyRange, MemoryStore, Op, Store, StoreError, Txn, WatchRequest,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), StoreError> {
/// let store = MemoryStore::new();
/// assert_eq!(store.current_revision().await?, 1);
///
/// // Watch every pod from the next write on.
/// let pods = KeyRange::Prefix("/registry/pods/".into());
/// let mut events = store.watch(WatchRequest::new(pods)).await?;
///
/// // Create a pod, then update it only if no one else did in between.
/// let key = "/registry/pods/default/web";
/// let created = store.put(key, Bytes::from_static(b"v1")).await?;
/// assert_eq!(created, 2);
/// let update = Txn::when([Compare::mod_revision(key, created)]).and_then([Op::put(key, "v2")]);
/// assert!(store.txn(update.clone()).await?.succeeded);
/// assert!(!store.txn(update).await?.succeeded, "the compare is stale now");
///
/// // The watch sees both writes, in order (one response may carry several revisions).
/// let mut seen = Vec::new();
/// while seen.len() < 2 {
///     let response = events.next().await.expect("the stream stays open")?;
///     seen.extend(response.events.iter().map(|e| (e.kind, e.kv.mod_revision, e.kv.version)));
/// }
/// assert_eq!(seen, [(EventKind::Put, 2, 1), (EventKind::Put, 3, 2)]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// An empty store at revision 1.
    pub fn new() -> MemoryStore {
        MemoryStore::from_state(State::empty())
    }

    fn from_state(state: State) -> MemoryStore {
        let revision = state.revision;
        MemoryStore {
            shared: Arc::new(Shared {
                published: AtomicI64::new(revision),
                state: RwLock::new(state),
                revision: watch::Sender::new(revision),
                lease_bound: watch::Sender::new(None),
                journal: std::sync::OnceLock::new(),
                last_sequence: AtomicU64::new(0),
                failed: AtomicBool::new(false),
            }),
        }
    }

    /// A store rebuilt from a checkpoint and the records written after it, whose changes from now
    /// on go to the journal that `journal` makes (given the [`Publisher`] it must call when
    /// records become durable). Changes become visible only once published; calls that change
    /// something return only then, so a call that returns `Ok` made a durable change. This is how
    /// a durable backend is built on this engine.
    pub fn journaled<F>(
        image: Image,
        records: impl IntoIterator<Item = Record>,
        journal: F,
    ) -> std::result::Result<MemoryStore, ReplayError>
    where
        F: FnOnce(Publisher) -> Arc<dyn Journal>,
    {
        let mut state = State::from_image(image)?;
        for record in records {
            state.replay(record)?;
        }
        state.journaled = true;
        let store = MemoryStore::from_state(state);
        let weak: Weak<Shared> = Arc::downgrade(&store.shared);
        let publisher = Publisher {
            publish: Arc::new(move |revision| {
                if let Some(shared) = weak.upgrade() {
                    shared.publish(revision);
                }
            }),
        };
        let journal = journal(publisher);
        // The store is not shared yet, so nothing can have set a journal before.
        let _ = store.shared.journal.set(journal);
        Ok(store)
    }

    /// Everything the store holds now (including changes not yet durable), as an [`Image`]: what
    /// a checkpoint or a backup writes. Also returns the sequence number of the last record
    /// handed to the journal, which the image covers.
    pub fn image(&self) -> (Image, u64) {
        let state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let sequence = self.shared.last_sequence.load(Ordering::SeqCst);
        (state.image(), sequence)
    }

    /// The revision of the last compaction (0 before the first); reads and watches need a revision
    /// at or after it.
    pub fn compact_revision(&self) -> Revision {
        self.shared.read().compacted
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("MemoryStore");
        match self.shared.state.try_read() {
            Ok(state) => {
                out.field("revision", &state.revision)
                    .field("compact_revision", &state.compacted)
                    .field("keys", &state.keys.len())
                    .field("leases", &state.leases.len());
            }
            Err(_) => {
                out.field("state", &"<locked>");
            }
        }
        out.field("watchers", &self.shared.revision.receiver_count())
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.shared.check_failed()?;
        check_range(&request.range)?;
        self.shared.expire_due().await?;
        let state = self.shared.read();
        let published = self.shared.published();
        if let Some(revision) = request.revision {
            state.check_revision(revision, published)?;
        }
        Ok(state.read_range(&request, published))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.shared.check_failed()?;
        check_txn(&txn)?;
        let response = {
            let mut state = self.shared.write();
            state.txn(txn)
        }?;
        self.shared.sync().await?;
        Ok(response)
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        self.shared.check_failed()?;
        check_range(&request.range)?;
        if request.progress_notify.is_some_and(|every| every.is_zero()) {
            return Err(invalid(
                "the progress notification interval must not be zero",
            ));
        }
        let next = {
            let _state = self.shared.read();
            let published = self.shared.published();
            match request.start_revision {
                None => published + 1,
                Some(revision) if revision < 1 => {
                    return Err(invalid("revisions start at 1"));
                }
                Some(revision) if revision > published + 1 => {
                    return Err(StoreError::FutureRevision {
                        revision,
                        current: published,
                    });
                }
                Some(revision) => revision,
            }
        };
        let watcher = Watcher {
            revisions: self.shared.revision.subscribe(),
            lease_bound: self.shared.lease_bound.subscribe(),
            shared: Arc::clone(&self.shared),
            range: request.range,
            prev_kv: request.prev_kv,
            next,
            progress: request.progress_notify,
            last_sent: Instant::now(),
            finished: false,
        };
        Ok(
            futures_util::stream::unfold(watcher, |mut watcher| async move {
                let item = watcher.next_item().await?;
                Some((item, watcher))
            })
            .boxed(),
        )
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        self.shared.check_failed()?;
        if ttl.is_zero() {
            return Err(invalid("a lease's time to live must not be zero"));
        }
        let lease = {
            let mut state = self.shared.write();
            state.grant(ttl)
        }?;
        self.shared.sync().await?;
        Ok(lease)
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.shared.check_failed()?;
        let ttl = {
            let mut state = self.shared.write();
            state.keep_alive(id)
        }?;
        self.shared.sync().await?;
        Ok(ttl)
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.shared.check_failed()?;
        let revoked = self.shared.write().revoke(id);
        self.shared.sync().await?;
        if revoked {
            Ok(())
        } else {
            Err(StoreError::LeaseNotFound(id))
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration> {
        self.shared.check_failed()?;
        self.shared.expire_due().await?;
        let now = Instant::now();
        let state = self.shared.read();
        let lease = state.leases.get(&id).ok_or(StoreError::LeaseNotFound(id))?;
        Ok(lease.deadline.saturating_duration_since(now))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.shared.check_failed()?;
        let compacted = {
            let mut state = self.shared.write();
            let published = self.shared.published();
            state.compact(revision, published)
        };
        self.shared.sync().await?;
        compacted
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.shared.check_failed()?;
        self.shared.expire_due().await?;
        let _state = self.shared.read();
        Ok(self.shared.published())
    }
}

/// What the clones of a store share.
struct Shared {
    state: RwLock<State>,
    /// The revision reads and watches see: the store's own, or, with a journal, the last one the
    /// journal made durable.
    published: AtomicI64,
    /// The published revision, for waking watch streams.
    revision: watch::Sender<Revision>,
    /// A time at or before the earliest lease deadline (`None`: no lease), for watch streams to
    /// sleep until.
    lease_bound: watch::Sender<Option<Instant>>,
    /// Where changes go, for a durable store.
    journal: std::sync::OnceLock<Arc<dyn Journal>>,
    /// The sequence number of the last record handed to the journal.
    last_sequence: AtomicU64,
    /// Whether the journal failed: the store then refuses every call.
    failed: AtomicBool,
}

impl Shared {
    /// The revision reads and watches see.
    fn published(&self) -> Revision {
        self.published.load(Ordering::SeqCst)
    }

    /// Makes the changes up to `revision` visible, waking the watch streams.
    fn publish(&self, revision: Revision) {
        let before = self.published.fetch_max(revision, Ordering::SeqCst);
        if revision > before {
            self.revision.send_if_modified(|published| {
                let newer = revision > *published;
                if newer {
                    *published = revision;
                }
                newer
            });
        }
    }

    fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "the store's journal failed; reopen the store".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Waits until every change handed to the journal so far is durable (at once without one).
    async fn sync(&self) -> Result<()> {
        let Some(journal) = self.journal.get() else {
            return Ok(());
        };
        let sequence = self.last_sequence.load(Ordering::SeqCst);
        if sequence == 0 {
            return Ok(());
        }
        journal.durable(sequence).await.map_err(|reason| {
            self.failed.store(true, Ordering::SeqCst);
            StoreError::Unavailable(format!("the store's journal failed: {reason}"))
        })
    }

    /// The state for reading, after expiring the leases that are due.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        let now = Instant::now();
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if !state.lease_due(now) {
                self.publish_lease_bound(&state, now);
                return state;
            }
        }
        drop(self.write());
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Expires the leases that are due and, with a journal, waits until their deletions are
    /// durable and visible, so that a read that follows sees them.
    async fn expire_due(&self) -> Result<()> {
        let due = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            state.lease_due(Instant::now())
        };
        if due {
            drop(self.write());
            self.sync().await?;
        }
        Ok(())
    }

    /// The state for writing, after expiring the leases that are due. Dropping the guard wakes
    /// the watch streams if the revision moved.
    fn write(&self) -> Write<'_> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let before = state.revision;
        let now = Instant::now();
        state.now = now;
        state.expire(now);
        Write {
            shared: self,
            state,
            before,
        }
    }

    /// Lowers the published lease bound to the earliest deadline, or raises a bound that has
    /// passed (keeping it at or before the earliest deadline, so that streams never sleep past
    /// one). Called with the state locked, so the bound always reflects one state.
    fn publish_lease_bound(&self, state: &State, now: Instant) {
        let earliest = state.deadlines.first().map(|&(deadline, _)| deadline);
        let stale = |bound: &Option<Instant>| match (*bound, earliest) {
            (None, None) => false,
            (None, Some(_)) => true,
            (Some(bound), Some(earliest)) => {
                earliest < bound || (bound <= now && earliest != bound)
            }
            (Some(bound), None) => bound <= now,
        };
        if stale(&self.lease_bound.borrow()) {
            self.lease_bound.send_if_modified(|bound| {
                let update = stale(bound);
                if update {
                    *bound = earliest;
                }
                update
            });
        }
    }
}

/// The state locked for writing; on drop, tells the watch streams what changed.
struct Write<'a> {
    shared: &'a Shared,
    state: RwLockWriteGuard<'a, State>,
    before: Revision,
}

impl Deref for Write<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Write<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut self.state.pending);
        match self.shared.journal.get() {
            Some(journal) => {
                for record in pending {
                    let sequence = journal.append(record);
                    self.shared
                        .last_sequence
                        .fetch_max(sequence, Ordering::SeqCst);
                }
            }
            None if !self.state.journaled => {
                let revision = self.state.revision;
                if revision != self.before {
                    self.shared.publish(revision);
                }
            }
            // A journaled store being built replays what is durable already.
            None => {}
        }
        self.shared.publish_lease_bound(&self.state, self.state.now);
    }
}

/// The store proper.
struct State {
    /// The current revision.
    revision: Revision,
    /// The last compaction's revision (0: none yet).
    compacted: Revision,
    /// Every key's history since the last compaction.
    keys: BTreeMap<String, History>,
    /// The events of every revision since the last compaction, in revision order, one entry per
    /// revision (every revision after 1 has events).
    log: VecDeque<Arc<LogEntry>>,
    leases: HashMap<LeaseId, LeaseState>,
    /// Every lease's deadline, earliest first.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    next_lease: LeaseId,
    /// The time the current write started at.
    now: Instant,
    /// Whether changes are journaled (they then wait in `pending` for the journal).
    journaled: bool,
    /// The records of the current write, for the journal.
    pending: Vec<Record>,
}

/// One version of a key.
#[derive(Debug)]
struct Version {
    mod_revision: Revision,
    create_revision: Revision,
    version: i64,
    lease: Option<LeaseId>,
    /// `None`: the key was deleted at `mod_revision`.
    value: Option<Bytes>,
    /// The position of this change among the changes of its revision.
    ordinal: u32,
}

impl Version {
    fn key_value(&self, key: &str) -> Option<KeyValue> {
        let value = self.value.as_ref()?;
        Some(KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        })
    }
}

/// The events of one revision, with previous values (streams that did not ask drop them).
struct LogEntry {
    revision: Revision,
    events: Vec<Event>,
}

struct LeaseState {
    ttl: Duration,
    deadline: Instant,
    /// When the lease was granted or last renewed, by the wall clock (for the journal).
    renewed_at: SystemTime,
    keys: BTreeSet<String>,
}

/// A key's versions since the last compaction. The last one is kept inline in the map, so that
/// reads of the present (and counts) never leave the map's nodes.
struct History {
    latest: Version,
    /// The versions before `latest`, in revision order.
    older: Vec<Version>,
}

impl History {
    fn new(first: Version) -> History {
        History {
            latest: first,
            older: Vec::new(),
        }
    }

    /// The version live at `at` (`None`: now), if the key existed then.
    fn at(&self, at: Option<Revision>) -> Option<&Version> {
        let version = match at {
            Some(revision) if revision < self.latest.mod_revision => {
                let after = self
                    .older
                    .partition_point(|version| version.mod_revision <= revision);
                after
                    .checked_sub(1)
                    .and_then(|index| self.older.get(index))?
            }
            _ => &self.latest,
        };
        version.value.is_some().then_some(version)
    }

    fn live(&self) -> Option<&Version> {
        self.at(None)
    }

    /// The event of this key at `revision`, with its previous value, if the key changed then.
    fn event_at(&self, key: &str, revision: Revision) -> Option<Event> {
        let versions: Vec<&Version> = self
            .older
            .iter()
            .chain(std::iter::once(&self.latest))
            .collect();
        let index = versions
            .iter()
            .position(|version| version.mod_revision == revision)?;
        let version = versions[index];
        let prev_kv = index
            .checked_sub(1)
            .and_then(|before| versions.get(before))
            .and_then(|before| before.key_value(key));
        Some(match &version.value {
            Some(value) => Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.to_owned(),
                    value: value.clone(),
                    create_revision: version.create_revision,
                    mod_revision: revision,
                    version: version.version,
                    lease: version.lease,
                },
                prev_kv,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_owned(),
                    value: Bytes::new(),
                    create_revision: version.create_revision,
                    mod_revision: revision,
                    version: 0,
                    lease: None,
                },
                prev_kv,
            },
        })
    }

    fn push(&mut self, version: Version) {
        let previous = std::mem::replace(&mut self.latest, version);
        self.older.push(previous);
    }

    /// Drops the versions superseded at `revision` (keeping the one live then, unless it is a
    /// deletion); whether nothing is left.
    fn compact(&mut self, revision: Revision) -> bool {
        if self.latest.mod_revision <= revision {
            self.older = Vec::new();
            return self.latest.value.is_none();
        }
        let after = self
            .older
            .partition_point(|version| version.mod_revision <= revision);
        let superseded = match after.checked_sub(1).and_then(|index| self.older.get(index)) {
            None => 0,
            Some(version) if version.value.is_none() => after,
            Some(_) => after - 1,
        };
        self.older.drain(..superseded);
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.older.len() + 1
    }
}

impl State {
    fn empty() -> State {
        State {
            revision: 1,
            compacted: 0,
            keys: BTreeMap::new(),
            log: VecDeque::new(),
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_lease: 1,
            now: Instant::now(),
            journaled: false,
            pending: Vec::new(),
        }
    }

    /// The state an image describes: key histories as they were, the event log rebuilt from
    /// them, leases with the time they have left by the wall clock.
    fn from_image(image: Image) -> std::result::Result<State, ReplayError> {
        let mut state = State::empty();
        if image.revision < 1 || image.compacted > image.revision {
            return Err(ReplayError(format!(
                "revision {} with compaction at {}",
                image.revision, image.compacted
            )));
        }
        state.revision = image.revision;
        state.compacted = image.compacted;
        state.next_lease = image.next_lease.max(1);
        let mut by_revision: BTreeMap<Revision, Vec<(u32, String)>> = BTreeMap::new();
        for version in image.versions {
            if version.mod_revision < 1 || version.mod_revision > image.revision {
                return Err(ReplayError(format!(
                    "{} has a version at revision {} beyond the store's {}",
                    version.key, version.mod_revision, image.revision
                )));
            }
            if version.mod_revision >= image.compacted.max(1) {
                by_revision
                    .entry(version.mod_revision)
                    .or_default()
                    .push((version.ordinal, version.key.clone()));
            }
            let entry = Version {
                mod_revision: version.mod_revision,
                create_revision: version.create_revision,
                version: version.version,
                lease: version.lease,
                value: version.value,
                ordinal: version.ordinal,
            };
            match state.keys.get_mut(&version.key) {
                Some(history) if history.latest.mod_revision < entry.mod_revision => {
                    history.push(entry);
                }
                Some(_) => {
                    return Err(ReplayError(format!(
                        "the versions of {} are out of order",
                        version.key
                    )));
                }
                None => {
                    state.keys.insert(version.key, History::new(entry));
                }
            }
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        for lease in image.leases {
            state.restore_lease(&lease, now, wall);
        }
        for history in state.keys.iter() {
            if let Some(id) = history.1.live().and_then(|version| version.lease)
                && let Some(lease) = state.leases.get_mut(&id)
            {
                lease.keys.insert(history.0.clone());
            }
        }
        // The log: each retained revision's changes, in their order, with previous values.
        for (revision, mut changes) in by_revision {
            changes.sort();
            let mut events = Vec::with_capacity(changes.len());
            for (_, key) in changes {
                let Some(history) = state.keys.get(&key) else {
                    continue;
                };
                events.extend(history.event_at(&key, revision));
            }
            if !events.is_empty() {
                state.log.push_back(Arc::new(LogEntry { revision, events }));
            }
        }
        Ok(state)
    }

    /// A lease as an image or a record keeps it, with the time it has left by the wall clock
    /// (none if it ran out while the store was down: it expires on the next call).
    fn restore_lease(&mut self, lease: &LeaseImage, now: Instant, wall: SystemTime) {
        let elapsed = wall.duration_since(lease.renewed_at).unwrap_or_default();
        let left = lease.ttl.saturating_sub(elapsed);
        let deadline = now.checked_add(left).unwrap_or(now);
        if let Some(previous) = self.leases.get_mut(&lease.id) {
            self.deadlines.remove(&(previous.deadline, lease.id));
            previous.deadline = deadline;
            previous.ttl = lease.ttl;
            previous.renewed_at = lease.renewed_at;
        } else {
            self.leases.insert(
                lease.id,
                LeaseState {
                    ttl: lease.ttl,
                    deadline,
                    renewed_at: lease.renewed_at,
                    keys: BTreeSet::new(),
                },
            );
        }
        self.deadlines.insert((deadline, lease.id));
        self.next_lease = self.next_lease.max(lease.id + 1);
    }

    /// Applies a record written after the image the state was built from.
    fn replay(&mut self, record: Record) -> std::result::Result<(), ReplayError> {
        match record {
            Record::Revision { revision, events } => {
                if revision != self.revision + 1 {
                    return Err(ReplayError(format!(
                        "revision {revision} follows revision {}",
                        self.revision
                    )));
                }
                let mut applied = Vec::with_capacity(events.len());
                for event in events {
                    let key = event.kv.key.clone();
                    match event.kind {
                        EventKind::Put => {
                            if !self.put_as(revision, event.kv, &mut applied) {
                                return Err(ReplayError(format!(
                                    "the write of {key} at revision {revision} does not follow from the key's history"
                                )));
                            }
                        }
                        EventKind::Delete => {
                            self.delete(revision, &KeyRange::Key(key), &mut applied);
                        }
                    }
                }
                self.commit(revision, applied);
            }
            Record::Lease(lease) => {
                self.restore_lease(&lease, Instant::now(), SystemTime::now());
            }
            Record::LeaseEnd(id) => {
                if let Some(lease) = self.leases.remove(&id) {
                    self.deadlines.remove(&(lease.deadline, id));
                }
            }
            Record::Compact(revision) => {
                let current = self.revision;
                self.compact(revision, current)
                    .map_err(|error| ReplayError(error.to_string()))?;
            }
        }
        Ok(())
    }

    /// Everything the state holds, as an image.
    fn image(&self) -> Image {
        let mut versions = Vec::new();
        for (key, history) in &self.keys {
            for version in history.older.iter().chain(std::iter::once(&history.latest)) {
                versions.push(VersionImage {
                    key: key.clone(),
                    mod_revision: version.mod_revision,
                    create_revision: version.create_revision,
                    version: version.version,
                    lease: version.lease,
                    value: version.value.clone(),
                    ordinal: version.ordinal,
                });
            }
        }
        let mut leases: Vec<LeaseImage> = self
            .leases
            .iter()
            .map(|(&id, lease)| LeaseImage {
                id,
                ttl: lease.ttl,
                renewed_at: lease.renewed_at,
            })
            .collect();
        leases.sort_by_key(|lease| lease.id);
        Image {
            revision: self.revision,
            compacted: self.compacted,
            next_lease: self.next_lease,
            versions,
            leases,
        }
    }

    /// Grants a lease.
    fn grant(&mut self, ttl: Duration) -> Result<Lease> {
        let deadline = self
            .now
            .checked_add(ttl)
            .ok_or_else(|| invalid("the lease's time to live is too long"))?;
        let id = self.next_lease;
        self.next_lease += 1;
        let renewed_at = SystemTime::now();
        self.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline,
                renewed_at,
                keys: BTreeSet::new(),
            },
        );
        self.deadlines.insert((deadline, id));
        if self.journaled {
            self.pending.push(Record::Lease(LeaseImage {
                id,
                ttl,
                renewed_at,
            }));
        }
        Ok(Lease { id, ttl })
    }

    /// Renews a lease for its whole time to live.
    fn keep_alive(&mut self, id: LeaseId) -> Result<Duration> {
        let now = self.now;
        let journaled = self.journaled;
        let State {
            leases,
            deadlines,
            pending,
            ..
        } = self;
        let lease = leases.get_mut(&id).ok_or(StoreError::LeaseNotFound(id))?;
        let deadline = now
            .checked_add(lease.ttl)
            .ok_or_else(|| invalid("the lease's time to live is too long"))?;
        deadlines.remove(&(lease.deadline, id));
        lease.deadline = deadline;
        lease.renewed_at = SystemTime::now();
        deadlines.insert((deadline, id));
        if journaled {
            pending.push(Record::Lease(LeaseImage {
                id,
                ttl: lease.ttl,
                renewed_at: lease.renewed_at,
            }));
        }
        Ok(lease.ttl)
    }

    /// The keys of `range` and their histories, in key order.
    fn entries(&self, range: &KeyRange) -> impl Iterator<Item = (&String, &History)> {
        let prefix_end = match range {
            KeyRange::Prefix(prefix) => prefix_end(prefix),
            KeyRange::Key(_) | KeyRange::Range { .. } => None,
        };
        let bounds: Option<(Bound<&str>, Bound<&str>)> = match range {
            KeyRange::Key(key) => Some((Bound::Included(key), Bound::Included(key))),
            KeyRange::Prefix(prefix) => Some((
                Bound::Included(prefix),
                prefix_end
                    .as_deref()
                    .map_or(Bound::Unbounded, Bound::Excluded),
            )),
            KeyRange::Range { start, end } => {
                (start < end).then_some((Bound::Included(start.as_str()), Bound::Excluded(end)))
            }
        };
        bounds
            .map(|bounds| self.keys.range::<str, _>(bounds))
            .into_iter()
            .flatten()
    }

    fn lease_due(&self, now: Instant) -> bool {
        self.deadlines
            .first()
            .is_some_and(|&(deadline, _)| deadline <= now)
    }

    /// Whether a read at `revision` can be served when the store is at `current`.
    fn check_revision(&self, revision: Revision, current: Revision) -> Result<()> {
        if revision < 1 {
            Err(invalid("revisions start at 1"))
        } else if revision < self.compacted {
            Err(StoreError::Compacted {
                revision,
                compact_revision: self.compacted,
            })
        } else if revision > current {
            Err(StoreError::FutureRevision { revision, current })
        } else {
            Ok(())
        }
    }

    /// Serves a read whose revision was checked; `now` is the revision a read of the present
    /// reports.
    fn read_range(&self, request: &RangeRequest, now: Revision) -> RangeResponse {
        // With a journal, the present of a read is the last durable revision, which the state's
        // history serves when newer changes wait for the journal.
        let at = request.revision.or((now < self.revision).then_some(now));
        let limit = match (request.count_only, request.limit) {
            (true, _) => 0,
            (false, limit) => limit.unwrap_or(usize::MAX),
        };
        let mut kvs = Vec::new();
        let mut count = 0;
        for (key, history) in self.entries(&request.range) {
            if let Some(version) = history.at(at) {
                if count < limit {
                    kvs.extend(version.key_value(key));
                }
                count += 1;
            }
        }
        RangeResponse {
            more: !request.count_only && count > kvs.len(),
            kvs,
            count,
            revision: request.revision.unwrap_or(now),
        }
    }

    /// Whether a compare holds now (etcd's rules: a missing key has revisions, version and lease
    /// 0, and a compare of its value never holds).
    fn compare(&self, compare: &Compare) -> bool {
        let live = self.keys.get(&compare.key).and_then(History::live);
        let ordering = match (&compare.target, live) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(target), Some(version)) => version
                .value
                .as_deref()
                .unwrap_or_default()
                .cmp(target.as_ref()),
            (CompareTarget::ModRevision(target), live) => {
                live.map_or(0, |version| version.mod_revision).cmp(target)
            }
            (CompareTarget::CreateRevision(target), live) => live
                .map_or(0, |version| version.create_revision)
                .cmp(target),
            (CompareTarget::Version(target), live) => {
                live.map_or(0, |version| version.version).cmp(target)
            }
            (CompareTarget::Lease(target), live) => live
                .and_then(|version| version.lease)
                .unwrap_or(0)
                .cmp(target),
        };
        match compare.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Greater => ordering.is_gt(),
            CompareOp::Less => ordering.is_lt(),
        }
    }

    /// Runs a transaction whose shape [`check_txn`] accepted.
    fn txn(&mut self, txn: Txn) -> Result<TxnResponse> {
        let succeeded = txn.compares.iter().all(|compare| self.compare(compare));
        let ops = if succeeded { txn.success } else { txn.failure };
        for op in &ops {
            match op {
                Op::Put {
                    lease: Some(lease), ..
                } if !self.leases.contains_key(lease) => {
                    return Err(StoreError::LeaseNotFound(*lease));
                }
                Op::Range(RangeRequest {
                    revision: Some(revision),
                    ..
                }) => self.check_revision(*revision, self.revision)?,
                _ => {}
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                Op::Put { key, value, lease } => OpResponse::Put {
                    prev_kv: self.put(revision, key, value, lease, &mut events),
                },
                Op::Delete(range) => OpResponse::Delete {
                    deleted: self.delete(revision, &range, &mut events),
                },
                Op::Range(request) => {
                    let now = if events.is_empty() {
                        self.revision
                    } else {
                        revision
                    };
                    OpResponse::Range(self.read_range(&request, now))
                }
            });
        }
        self.commit(revision, events);
        Ok(TxnResponse {
            succeeded,
            revision: self.revision,
            responses,
        })
    }

    /// Writes a key at `revision`; returns its previous value.
    fn put(
        &mut self,
        revision: Revision,
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
        events: &mut Vec<Event>,
    ) -> Option<KeyValue> {
        let history = self.keys.get_mut(&key);
        let prev = history
            .as_ref()
            .and_then(|history| history.live())
            .and_then(|version| version.key_value(&key));
        let (create_revision, version) = match &prev {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (revision, 1),
        };
        let new = Version {
            mod_revision: revision,
            create_revision,
            version,
            lease,
            value: Some(value.clone()),
            ordinal: u32::try_from(events.len()).unwrap_or(u32::MAX),
        };
        match history {
            Some(history) => history.push(new),
            None => {
                self.keys.insert(key.clone(), History::new(new));
            }
        }
        let old_lease = prev.as_ref().and_then(|prev| prev.lease);
        if old_lease != lease {
            if let Some(old) = old_lease.and_then(|id| self.leases.get_mut(&id)) {
                old.keys.remove(&key);
            }
            if let Some(new) = lease.and_then(|id| self.leases.get_mut(&id)) {
                new.keys.insert(key.clone());
            }
        }
        events.push(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
                version,
                lease,
            },
            prev_kv: prev.clone(),
        });
        prev
    }

    /// Replays a put of a record: the same write, which must give the same key-value.
    fn put_as(&mut self, revision: Revision, kv: KeyValue, events: &mut Vec<Event>) -> bool {
        let expected = kv.clone();
        self.put(revision, kv.key, kv.value, kv.lease, events);
        events.last().is_some_and(|event| event.kv == expected)
    }

    /// Deletes the live keys of `range` at `revision`; returns them as they were.
    fn delete(
        &mut self,
        revision: Revision,
        range: &KeyRange,
        events: &mut Vec<Event>,
    ) -> Vec<KeyValue> {
        let deleted: Vec<KeyValue> = self
            .entries(range)
            .filter_map(|(key, history)| history.live().and_then(|version| version.key_value(key)))
            .collect();
        for prev in &deleted {
            if let Some(history) = self.keys.get_mut(&prev.key) {
                history.push(Version {
                    mod_revision: revision,
                    create_revision: prev.create_revision,
                    version: 0,
                    lease: None,
                    value: None,
                    ordinal: u32::try_from(events.len()).unwrap_or(u32::MAX),
                });
            }
            if let Some(lease) = prev.lease.and_then(|id| self.leases.get_mut(&id)) {
                lease.keys.remove(&prev.key);
            }
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: prev.key.clone(),
                    value: Bytes::new(),
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                    version: 0,
                    lease: None,
                },
                prev_kv: Some(prev.clone()),
            });
        }
        deleted
    }

    /// Makes `revision` the current one if it changed anything.
    fn commit(&mut self, revision: Revision, events: Vec<Event>) {
        if !events.is_empty() {
            self.revision = revision;
            if self.journaled {
                self.pending.push(Record::Revision {
                    revision,
                    events: events
                        .iter()
                        .map(|event| Event {
                            kind: event.kind,
                            kv: event.kv.clone(),
                            prev_kv: None,
                        })
                        .collect(),
                });
            }
            self.log.push_back(Arc::new(LogEntry { revision, events }));
        }
    }

    /// Revokes a lease, deleting its keys at one revision; whether it existed.
    fn revoke(&mut self, id: LeaseId) -> bool {
        let Some(lease) = self.leases.remove(&id) else {
            return false;
        };
        self.deadlines.remove(&(lease.deadline, id));
        let revision = self.revision + 1;
        let mut events = Vec::new();
        for key in lease.keys {
            self.delete(revision, &KeyRange::Key(key), &mut events);
        }
        self.commit(revision, events);
        if self.journaled {
            self.pending.push(Record::LeaseEnd(id));
        }
        true
    }

    /// Revokes every lease whose deadline is at or before `now`, earliest first.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            if !self.revoke(id) {
                // A deadline without its lease cannot happen; drop it rather than loop.
                self.deadlines.remove(&(deadline, id));
            }
        }
    }

    /// Forgets the history before `revision` (which must be at or before `published`, the
    /// revision reads see).
    fn compact(&mut self, revision: Revision, published: Revision) -> Result<()> {
        if revision < 1 {
            return Err(invalid("revisions start at 1"));
        }
        if revision > published {
            return Err(StoreError::FutureRevision {
                revision,
                current: published,
            });
        }
        if revision <= self.compacted {
            return Err(StoreError::Compacted {
                revision,
                compact_revision: self.compacted,
            });
        }
        self.compacted = revision;
        let mut dropped = Vec::new();
        while self
            .log
            .front()
            .is_some_and(|entry| entry.revision < revision)
        {
            dropped.extend(self.log.pop_front());
        }
        let touched: BTreeSet<&str> = dropped
            .iter()
            .flat_map(|entry| entry.events.iter().map(|event| event.kv.key.as_str()))
            .collect();
        // Keep what was live just before `revision`: the previous values of the changes at
        // `revision`, whose log entry stays.
        for key in touched {
            if self
                .keys
                .get_mut(key)
                .is_some_and(|history| history.compact(revision - 1))
            {
                self.keys.remove(key);
            }
        }
        if self.journaled {
            self.pending.push(Record::Compact(revision));
        }
        Ok(())
    }
}

/// A watch stream's state: a cursor into the shared log.
struct Watcher {
    shared: Arc<Shared>,
    range: KeyRange,
    prev_kv: bool,
    /// The next revision to deliver.
    next: Revision,
    progress: Option<Duration>,
    /// When the stream last yielded (or was created), for progress notifications.
    last_sent: Instant,
    revisions: watch::Receiver<Revision>,
    lease_bound: watch::Receiver<Option<Instant>>,
    finished: bool,
}

/// What a look at the log found.
enum Polled {
    /// Events of whole revisions.
    Events(WatchResponse),
    /// The cursor was compacted away.
    Compacted(StoreError),
    /// Every revision up to this one was delivered.
    CaughtUp(Revision),
}

impl Watcher {
    async fn next_item(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        loop {
            // Mark the revision seen before reading the log, so that no write is missed.
            self.revisions.borrow_and_update();
            let caught_up = match self.poll() {
                Polled::Events(response) => {
                    self.last_sent = Instant::now();
                    return Some(Ok(response));
                }
                Polled::Compacted(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
                Polled::CaughtUp(revision) => revision,
            };
            // An interval too long to add to an instant never comes.
            let progress_at = self
                .progress
                .and_then(|every| self.last_sent.checked_add(every));
            if progress_at.is_some_and(|at| at <= Instant::now()) {
                self.last_sent = Instant::now();
                return Some(Ok(WatchResponse {
                    revision: caught_up,
                    events: Vec::new(),
                    progress: true,
                }));
            }
            let lease_deadline = *self.lease_bound.borrow_and_update();
            tokio::select! {
                biased;
                changed = self.revisions.changed() => {
                    if changed.is_err() {
                        // The store is gone (cannot happen while this stream holds it).
                        self.finished = true;
                        return None;
                    }
                }
                changed = self.lease_bound.changed() => {
                    if changed.is_err() {
                        self.finished = true;
                        return None;
                    }
                }
                // The next poll expires the due leases.
                () = sleep_until(lease_deadline) => {}
                () = sleep_until(progress_at) => {}
            }
        }
    }

    /// Reads the log from the cursor on: the next whole revisions with events in the range.
    fn poll(&mut self) -> Polled {
        loop {
            let (entries, current) = {
                let state = self.shared.read();
                // Only what is published (durable, with a journal) is delivered.
                let published = self.shared.published();
                if self.next < state.compacted {
                    return Polled::Compacted(StoreError::Compacted {
                        revision: self.next,
                        compact_revision: state.compacted,
                    });
                }
                if self.next > published {
                    return Polled::CaughtUp(published);
                }
                let first = state
                    .log
                    .front()
                    .map_or(published + 1, |entry| entry.revision);
                let skip = usize::try_from(self.next - first)
                    .unwrap_or(0)
                    .min(state.log.len());
                let entries: Vec<Arc<LogEntry>> = state
                    .log
                    .range(skip..)
                    .take_while(|entry| entry.revision <= published)
                    .take(MAX_ENTRIES_PER_POLL)
                    .cloned()
                    .collect();
                (entries, published)
            };
            let mut events = Vec::new();
            let mut last = self.next;
            for entry in &entries {
                if events.len() >= MAX_EVENTS_PER_RESPONSE {
                    break;
                }
                for event in &entry.events {
                    if self.range.contains(&event.kv.key) {
                        events.push(if self.prev_kv {
                            event.clone()
                        } else {
                            Event {
                                kind: event.kind,
                                kv: event.kv.clone(),
                                prev_kv: None,
                            }
                        });
                        last = entry.revision;
                    }
                }
                self.next = entry.revision + 1;
            }
            if entries.is_empty() {
                // Only revision 1 (which has no events) lay before the log.
                self.next = current + 1;
            }
            if !events.is_empty() {
                return Polled::Events(WatchResponse {
                    revision: last,
                    events,
                    progress: false,
                });
            }
            if self.next > current {
                return Polled::CaughtUp(current);
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The first key after every key that starts with `prefix` (`None`: there is none, as for the
/// empty prefix). Keys order by their UTF-8 bytes, which is the order of their characters, so
/// this is `prefix` with its last character made the next one (dropping trailing `char::MAX`).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            last => char::from_u32(u32::from(last) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn invalid(message: &str) -> StoreError {
    StoreError::InvalidRequest(message.to_owned())
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        Err(invalid("empty key"))
    } else {
        Ok(())
    }
}

fn check_range(range: &KeyRange) -> Result<()> {
    match range {
        KeyRange::Key(key) => check_key(key),
        KeyRange::Prefix(_) | KeyRange::Range { .. } => Ok(()),
    }
}

/// The checks of a transaction's shape, before it runs: keys are not empty, and no branch
/// writes a key twice.
fn check_txn(txn: &Txn) -> Result<()> {
    for compare in &txn.compares {
        check_key(&compare.key)?;
    }
    check_branch(&txn.success)?;
    check_branch(&txn.failure)
}

fn check_branch(ops: &[Op]) -> Result<()> {
    let duplicate = || invalid("a key is written more than once in one branch of the transaction");
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    let mut spans: Vec<&KeyRange> = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, .. } | Op::Delete(KeyRange::Key(key)) => {
                check_key(key)?;
                if !keys.insert(key) {
                    return Err(duplicate());
                }
            }
            Op::Delete(range) => spans.push(range),
            Op::Range(request) => check_range(&request.range)?,
        }
    }
    for (index, span) in spans.iter().enumerate() {
        // Spans are contiguous in key order: if any written key is in one, the first key at or
        // after its start is.
        let first_key = keys
            .range::<str, _>((Bound::Included(span.start()), Bound::Unbounded))
            .next();
        if first_key.is_some_and(|key| span.contains(key)) {
            return Err(duplicate());
        }
        if spans
            .iter()
            .skip(index + 1)
            .any(|other| overlap(span, other))
        {
            return Err(duplicate());
        }
    }
    Ok(())
}

/// Whether two key ranges share a key. Each range covers a contiguous run of keys that starts at
/// its start (if it covers any), so two ranges share a key exactly when one covers both starts'
/// larger, that is, when both cover one of the two starts.
fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    [a.start(), b.start()]
        .into_iter()
        .any(|key| a.contains(key) && b.contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn key(k: &str) -> KeyRange {
        KeyRange::Key(k.into())
    }

    fn prefix(p: &str) -> KeyRange {
        KeyRange::Prefix(p.into())
    }

    fn span(start: &str, end: &str) -> KeyRange {
        KeyRange::Range {
            start: start.into(),
            end: end.into(),
        }
    }

    #[test]
    fn ranges_overlap_by_their_keys() {
        assert!(overlap(&prefix("a"), &key("ab")));
        assert!(overlap(&prefix("a"), &prefix("ab")));
        assert!(overlap(&prefix(""), &span("x", "y")));
        assert!(overlap(&span("a", "c"), &span("b", "d")));
        assert!(!overlap(&span("a", "b"), &span("b", "c")));
        assert!(!overlap(&prefix("a"), &prefix("b")));
        assert!(!overlap(&prefix("ab"), &key("a")));
        assert!(!overlap(&span("c", "a"), &prefix("")), "an empty range");
        assert!(overlap(&span("a", "b"), &prefix("a")));
        assert!(!overlap(&span("a", "b"), &prefix("b")));
        assert!(overlap(&span("az", "c"), &prefix("b")));
    }

    #[test]
    fn prefixes_end_after_their_keys() {
        assert_eq!(
            prefix_end("/registry/pods/"),
            Some("/registry/pods0".into())
        );
        assert_eq!(prefix_end("a"), Some("b".into()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}"), Some("x\u{E000}".into()));
        for (prefix, inside, outside) in [
            ("a", "a\u{10FFFF}\u{10FFFF}", "b"),
            ("ab", "ab\u{0}", "ac"),
            ("\u{7F}", "\u{7F}\u{10FFFF}", "\u{80}"),
        ] {
            let end = prefix_end(prefix).unwrap();
            assert!(inside.starts_with(prefix) && inside < end.as_str());
            assert!(!outside.starts_with(prefix) && outside >= end.as_str());
        }
    }

    #[tokio::test]
    async fn prefix_reads_stop_at_the_prefix() {
        let store = MemoryStore::new();
        for key in ["a", "a/", "a/\u{10FFFF}", "a0", "a/x", "b"] {
            store.put(key, Bytes::new()).await.unwrap();
        }
        let keys = |response: RangeResponse| -> Vec<String> {
            response.kvs.into_iter().map(|kv| kv.key).collect()
        };
        let slash = store.range(RangeRequest::prefix("a/")).await.unwrap();
        assert_eq!(keys(slash), ["a/", "a/x", "a/\u{10FFFF}"]);
        let all = store.range(RangeRequest::prefix("")).await.unwrap();
        assert_eq!(all.count, 6);
    }

    #[test]
    fn branches_write_each_key_once() {
        let put = |k: &str| Op::put(k, "v");
        let delete = |range: KeyRange| Op::Delete(range);
        assert!(check_branch(&[put("a"), put("b"), delete(prefix("c"))]).is_ok());
        assert!(check_branch(&[put("a"), put("a")]).is_err());
        assert!(check_branch(&[put("a"), Op::delete("a")]).is_err());
        assert!(check_branch(&[delete(prefix("a")), put("ab")]).is_err());
        assert!(check_branch(&[put("b"), delete(span("a", "c"))]).is_err());
        assert!(check_branch(&[put("c"), delete(span("a", "c"))]).is_ok());
        assert!(check_branch(&[delete(prefix("a")), delete(span("a", "b"))]).is_err());
        assert!(check_branch(&[put("")]).is_err());
    }

    #[tokio::test]
    async fn a_fresh_store_is_at_revision_one() {
        let store = MemoryStore::new();
        assert_eq!(store.current_revision().await, Ok(1));
        assert_eq!(store.compact_revision(), 0);
        let all = store.range(RangeRequest::prefix("")).await;
        assert_eq!(all.map(|r| (r.count, r.revision)), Ok((0, 1)));
        assert_eq!(store.put("a", Bytes::from_static(b"1")).await, Ok(2));
        assert!(matches!(
            store.range(RangeRequest::prefix("").at(0)).await,
            Err(StoreError::InvalidRequest(_))
        ));
        assert!(format!("{store:?}").contains("revision: 2"));
    }

    #[tokio::test]
    async fn errors_carry_the_revisions() {
        let store = MemoryStore::new();
        for i in 0..5 {
            store.put("k", Bytes::from(format!("{i}"))).await.unwrap();
        }
        store.compact(4).await.unwrap();
        assert_eq!(
            store.range(RangeRequest::key("k").at(3)).await,
            Err(StoreError::Compacted {
                revision: 3,
                compact_revision: 4
            })
        );
        assert_eq!(
            store.range(RangeRequest::key("k").at(7)).await,
            Err(StoreError::FutureRevision {
                revision: 7,
                current: 6
            })
        );
        assert_eq!(
            store.compact(4).await,
            Err(StoreError::Compacted {
                revision: 4,
                compact_revision: 4
            })
        );
        let mut stream = store
            .watch(WatchRequest::new(key("k")).from(2))
            .await
            .unwrap();
        assert_eq!(
            stream.next().await,
            Some(Err(StoreError::Compacted {
                revision: 2,
                compact_revision: 4
            }))
        );
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn compaction_drops_superseded_versions() {
        let store = MemoryStore::new();
        store.put("a", Bytes::from_static(b"1")).await.unwrap(); // 2
        store.put("a", Bytes::from_static(b"2")).await.unwrap(); // 3
        store.put("b", Bytes::from_static(b"1")).await.unwrap(); // 4
        store.delete("b").await.unwrap(); // 5
        store.put("c", Bytes::from_static(b"1")).await.unwrap(); // 6
        store.compact(5).await.unwrap();
        {
            let state = store.shared.read();
            assert_eq!(state.keys.get("a").map(History::len), Some(1));
            assert_eq!(
                state.keys.get("b").map(History::len),
                Some(2),
                "deleted at the compaction: the deletion's event (with its previous value) stays"
            );
            assert_eq!(state.keys.get("c").map(History::len), Some(1));
            assert_eq!(state.log.len(), 2);
        }
        store.compact(6).await.unwrap();
        assert!(
            !store.shared.read().keys.contains_key("b"),
            "deleted before the compaction"
        );
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    }

    /// A watcher that is never polled keeps nothing, and one that falls behind a compaction gets
    /// `Compacted` (the conformance suite also allows backends that buffer eagerly).
    #[tokio::test]
    async fn a_slow_watcher_is_overtaken_by_compaction() {
        let store = MemoryStore::new();
        let mut stream = store.watch(WatchRequest::new(prefix(""))).await.unwrap();
        store.put("a", Bytes::from_static(b"1")).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.revision, 2);
        for i in 0..5 {
            store.put("a", Bytes::from(format!("{i}"))).await.unwrap();
        }
        store.compact(5).await.unwrap();
        assert_eq!(
            stream.next().await,
            Some(Err(StoreError::Compacted {
                revision: 3,
                compact_revision: 5
            }))
        );
        assert_eq!(stream.next().await, None);
    }

    /// An open watch expires a lease at its deadline even when no one calls the store.
    #[tokio::test(start_paused = true)]
    async fn watchers_expire_leases_on_time() {
        let store = MemoryStore::new();
        let lease = store.lease_grant(Duration::from_secs(10)).await.unwrap();
        let put = Op::Put {
            key: "node".into(),
            value: Bytes::from_static(b"up"),
            lease: Some(lease.id),
        };
        store.txn(Txn::default().and_then([put])).await.unwrap();
        let start = Instant::now();
        let mut stream = store.watch(WatchRequest::new(key("node"))).await.unwrap();
        let response = stream.next().await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(response.events.len(), 1);
        assert_eq!(response.events[0].kind, EventKind::Delete);
        assert_eq!(response.revision, 3);
        assert_eq!(store.shared.read().revision, 3);
    }

    /// A lease granted after a watcher went to sleep, with an earlier deadline, wakes it in time
    /// to expire the lease, with no store call.
    #[tokio::test(start_paused = true)]
    async fn an_earlier_lease_wakes_the_watchers() {
        let store = MemoryStore::new();
        let late = store.lease_grant(Duration::from_secs(100)).await.unwrap();
        let mut stream = store.watch(WatchRequest::new(prefix("x/"))).await.unwrap();
        let watcher = tokio::spawn(async move { stream.next().await });
        tokio::task::yield_now().await;
        let early = store.lease_grant(Duration::from_secs(5)).await.unwrap();
        let put = Op::Put {
            key: "k".into(),
            value: Bytes::new(),
            lease: Some(early.id),
        };
        store.txn(Txn::default().and_then([put])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let raw = |store: &MemoryStore| {
            let state = store.shared.state.read().unwrap();
            (
                state.revision,
                state.keys.get("k").and_then(History::live).is_some(),
            )
        };
        assert_eq!(raw(&store), (3, false), "the watcher expired the lease");
        assert!(!watcher.is_finished());
        watcher.abort();
        // Kept-alive leases move the bound later; streams do not spin on a passed bound.
        store.lease_keep_alive(late.id).await.unwrap();
        assert!(store.lease_time_to_live(late.id).await.unwrap() > Duration::from_secs(99));
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_one_revision_each_in_deadline_order() {
        let store = MemoryStore::new();
        let second = store.lease_grant(Duration::from_secs(2)).await.unwrap();
        let first = store.lease_grant(Duration::from_secs(1)).await.unwrap();
        let empty = store.lease_grant(Duration::from_secs(1)).await.unwrap();
        for (k, lease) in [("a", second.id), ("b", first.id), ("c", first.id)] {
            let put = Op::Put {
                key: k.into(),
                value: Bytes::new(),
                lease: Some(lease),
            };
            store.txn(Txn::default().and_then([put])).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        // Puts at 2, 3 and 4; the first lease expires at 5, the empty one takes no revision, the
        // second expires at 6.
        assert_eq!(store.current_revision().await, Ok(6));
        let mut stream = store
            .watch(WatchRequest::new(prefix("")).from(5))
            .await
            .unwrap();
        let response = stream.next().await.unwrap().unwrap();
        let deletes: Vec<_> = response
            .events
            .iter()
            .map(|e| (e.kv.key.as_str(), e.kv.mod_revision))
            .collect();
        assert_eq!(deletes, [("b", 5), ("c", 5), ("a", 6)]);
        for id in [first.id, second.id, empty.id] {
            assert_eq!(
                store.lease_keep_alive(id).await,
                Err(StoreError::LeaseNotFound(id))
            );
        }
    }

    /// Durations too long to add to an instant are refused or never come; nothing panics.
    #[tokio::test(start_paused = true)]
    async fn endless_durations_do_not_overflow() {
        let store = MemoryStore::new();
        assert!(matches!(
            store.lease_grant(Duration::MAX).await,
            Err(StoreError::InvalidRequest(_))
        ));
        let mut stream = store
            .watch(WatchRequest::new(prefix("")).progress(Duration::MAX))
            .await
            .unwrap();
        store.put("k", Bytes::new()).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().revision, 2);
        let idle = tokio::time::timeout(Duration::from_secs(3600), stream.next()).await;
        assert!(idle.is_err(), "no progress notification ever");
        assert!(matches!(
            store
                .watch(WatchRequest::new(prefix("")).progress(Duration::ZERO))
                .await,
            Err(StoreError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn dropped_streams_leave_nothing_behind() {
        let store = MemoryStore::new();
        let streams: Vec<_> = futures_util::future::join_all(
            (0..10).map(|_| store.watch(WatchRequest::new(prefix("")))),
        )
        .await;
        assert_eq!(store.shared.revision.receiver_count(), 10);
        drop(streams);
        assert_eq!(store.shared.revision.receiver_count(), 0);
        assert_eq!(Arc::strong_count(&store.shared), 1);
    }

    #[cfg(feature = "testing")]
    mod conformance {
        crate::store_conformance_tests!(paused_time, || async { crate::store::MemoryStore::new() });
    }
}
