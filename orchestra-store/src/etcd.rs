//! The etcd store: [`EtcdStore`], the [`Store`] seam on an etcd cluster (cargo feature `etcd`).
//!
//! The [`Store`] trait is shaped after etcd's v3 API, so this backend is a thin translation: each
//! call is one etcd request (a few calls add a second one, named below), revisions are etcd's own,
//! and every guarantee etcd gives (linearizable reads and writes, raft replication, fail-over
//! between members) comes with it. It is the backend for a control plane of several API servers
//! over an etcd cluster.
//!
//! # What maps to what
//!
//! | [`Store`] | etcd v3 |
//! |---|---|
//! | [`Store::range`] | `Range` (linearizable): key, prefix or `[start, end)`, `limit`, `revision`, `count_only`; `more` and `count` as etcd counts |
//! | [`Store::txn`] | `Txn`: compares on mod/create revision, version, value and lease with `=`, `!=`, `>`, `<`; puts (with lease) and deletes ask for `prev_kv`; ranges inside are etcd's |
//! | [`Store::watch`] | `Watch` from a start revision, with `prev_kv`; one gRPC stream per watch, so dropping the stream cancels the etcd watch |
//! | [`Store::lease_grant`] | `LeaseGrant`, the time to live rounded **up** to whole seconds (etcd may raise it to its minimum, 2 s by default) |
//! | [`Store::lease_keep_alive`] | `LeaseKeepAlive`: a stream opened for the call, one renewal in, one answer out (two, in fact: etcd's client library swallows the first answer's time to live) |
//! | [`Store::lease_revoke`], [`Store::lease_time_to_live`] | `LeaseRevoke`, `LeaseTimeToLive` (etcd's `-1` for an unknown or expired lease is [`StoreError::LeaseNotFound`]) |
//! | [`Store::compact`] | `Compact` with `physical`: returns once etcd has removed the history |
//! | [`Store::current_revision`] | the header revision of a linearizable count-only read of one key |
//!
//! Revisions are etcd's, which are global to the etcd cluster and do not start at 1 for a new
//! store: two stores over one etcd (see the key prefix below) share one revision counter, and a
//! write through either advances both. The contract's first promise ("a fresh store is at
//! revision 1") therefore holds only for a fresh etcd; every other promise holds as it is.
//!
//! # The key prefix
//!
//! [`EtcdOptions::key_prefix`] gives the store a namespace: the prefix is put before every key
//! the store sends (keys, ranges, compares, watches) and taken off every key it returns, so a
//! store sees only its own keys, as if it had the etcd to itself. Many stores (tenants, tests,
//! one Orchestra next to other etcd users) can so share one etcd. Two things stay shared, because
//! etcd has one of each: the revision counter, and compaction (a compaction through any store
//! compacts the whole etcd). The prefix is a plain prefix of etcd's keys, so no store's prefix
//! may be a prefix of another's: under `/tenant-a`, the key `b/pods` is `/tenant-ab/pods`, which
//! a store under `/tenant-ab` sees as its key `/pods`; ending prefixes with a separator that no
//! other prefix continues (`/tenant-a/`, `/tenant-ab/`) keeps them apart. Keys are UTF-8 in the
//! [`Store`] API; a key under the prefix that is not (written by another etcd client) fails the
//! read that meets it with [`StoreError::InvalidRequest`].
//!
//! # Members and fail-over
//!
//! [`EtcdStore::connect`] makes one gRPC client per endpoint (per etcd member) and sends every
//! request of the store to one member, the same until a request to it fails as unavailable
//! (stores start on different members, which spreads their load; every member serves
//! linearizable reads and forwards writes to the leader):
//!
//! - a request that could not reach its member (the connection was refused: the member is down)
//!   is sent again at once to the next member: etcd never saw it, so that is safe;
//! - a request that timed out or that etcd refused as unavailable (the member hangs, has no
//!   leader or is overloaded, or its leader hangs) fails with [`StoreError::Unavailable`], since
//!   it may have been applied; the store then asks every member for its status at once and
//!   sticks to the first that answers with a leader, so the caller's retry finds a healthy one.
//!
//! A member that dies so costs its requests nothing but a reconnection, and a member that hangs
//! costs the requests in flight one request time-out ([`EtcdOptions::request_timeout`]). The
//! client library alone would keep offering a dead or hung member to a share of the requests.
//! Open watch streams notice a hung member by their HTTP/2 keep-alive pings
//! ([`EtcdOptions::keep_alive`]) and are then opened again elsewhere (see below).
//!
//! # Where the contract is stricter than etcd
//!
//! The backend checks these on the client side, before sending anything, so that it keeps the
//! [`Store`] contract exactly (and `MemoryStore`'s answers) where etcd would accept more:
//!
//! - **Empty keys** (in a read, a write, a compare or a watch) are [`StoreError::InvalidRequest`];
//!   an empty *prefix* is the whole key space (under the key prefix). A key range whose end is not
//!   after its start is empty, as the contract says, where etcd would read an empty end as "this
//!   one key".
//! - **A key written twice in one branch** of a transaction is refused, whichever way the writes
//!   overlap (etcd refuses two puts of a key and a put inside a deleted range, but allows two
//!   overlapping deletes).
//! - **Revisions below 1** in reads, transaction reads, watches and compactions are
//!   [`StoreError::InvalidRequest`] (etcd reads `0` as "now").
//! - **A watch from a revision after the next write's** is [`StoreError::FutureRevision`] (etcd
//!   would wait for it). The check uses the revision etcd reports when it creates the watch and,
//!   only when that looks too old (the member may lag behind the leader), one linearizable read.
//! - **A lease with no time to live** is [`StoreError::InvalidRequest`] (etcd would grant its
//!   minimum); a progress interval of zero too.
//! - **Compacting to a revision at or before the last compaction** is [`StoreError::Compacted`]
//!   (etcd answers the same; the store also remembers the highest compaction it has seen and
//!   answers from that without a round trip).
//!
//! # Watches and progress notifications
//!
//! Each watch is one etcd watch on a gRPC stream of its own; [`Store::watch`] returns once etcd
//! has created it, so a write that starts afterwards is delivered. The stream keeps the contract's
//! promises as etcd keeps them (every change from the start revision, in order, whole revisions
//! per response), and adds three things:
//!
//! - **Delete events carry the key's last create revision**, as the contract asks, where etcd
//!   sends 0: the backend always asks etcd for previous values and takes the create revision from
//!   them (and drops the previous values from the events when the watch did not ask for them). If
//!   etcd has compacted the previous value away, the create revision is 0.
//! - **Compaction.** When etcd cancels a watch because the revision it needs was compacted, the
//!   stream yields [`StoreError::Compacted`], with the first revision it had not delivered and
//!   etcd's compaction revision, and ends.
//! - **Fail-over.** When the stream breaks (the member died, or lost its leader: the store asks
//!   etcd to require a leader), the watch is opened again, through any member, from the first
//!   revision it had not delivered, for up to [`EtcdOptions::watch_resume`] (10 s by default); only
//!   then does the stream yield [`StoreError::Unavailable`] and end. Nothing is lost or repeated.
//!
//! **Progress notifications.** etcd's own `progress_notify` sends a notification about every ten
//! minutes, server-wide, far too seldom for [`WatchRequest::progress_notify`]. So the stream
//! counts the idle time itself: after `interval` without an event (at least 250 ms) it sends
//! etcd a progress request on the watch's stream and turns etcd's answer (no events, the header
//! revision) into a [`WatchResponse`](orchestra_core::store::WatchResponse) with `progress` set. Before etcd 3.4.25 and 3.5.8 the
//! answer could overtake events still queued for the stream (etcd issue 15220); so the stream
//! takes an answer's revision only once a second answer, requested after the first arrived,
//! confirms it with no event in between, and never reports a revision below the last event it
//! delivered. Fixed etcd versions order the answers with the events, and the confirmation costs
//! one round trip per notification.
//!
//! # Errors
//!
//! etcd's errors map onto [`StoreError`]: "required revision has been compacted" is
//! [`StoreError::Compacted`] (etcd does not say the compaction revision; the store learns it with
//! a few cheap reads, see [`EtcdStore::compact_revision`]), "required revision is a future
//! revision" is [`StoreError::FutureRevision`] (with the current revision, read afterwards),
//! "requested lease not found" is [`StoreError::LeaseNotFound`] (for a transaction with puts on
//! several leases, the store asks which one is gone), requests etcd refuses as malformed or too
//! large are [`StoreError::InvalidRequest`], and connection failures, time-outs, a missing
//! leader, an overloaded or failing member are [`StoreError::Unavailable`], which the caller may
//! retry (a write that timed out may have been applied).
//!
//! # Running etcd
//!
//! The backend needs a running etcd 3.4 or later (Debian: `apt-get install etcd-server`); its
//! build needs `protoc` (Debian: `protobuf-compiler`). For development, `scripts/etcd.sh start`
//! starts a single member on `127.0.0.1:23790` (`scripts/etcd.sh start cluster`: three members)
//! with data in a temporary folder, and prints the endpoints; `scripts/etcd.sh stop` stops it.
//! `scripts/test.sh` installs etcd, starts a member and exports its endpoints in
//! `ORCHESTRA_ETCD_ENDPOINTS` for the tests.
//!
//! # Examples
//!
//! ```no_run
//! use bytes::Bytes;
//! use orchestra_core::store::{Compare, Op, Store, StoreError, Txn};
//! use orchestra_store::etcd::{EtcdOptions, EtcdStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! // One store per tenant on a shared etcd cluster: each sees only its own keys.
//! let endpoints = ["http://127.0.0.1:2379", "http://127.0.0.2:2379", "http://127.0.0.3:2379"];
//! let store = EtcdStore::connect(&endpoints, EtcdOptions::new().key_prefix("/tenant-a/")).await?;
//!
//! let key = "/registry/pods/default/web";
//! let created = store.put(key, Bytes::from_static(b"v1")).await?;
//! let update = Txn::when([Compare::mod_revision(key, created)]).and_then([Op::put(key, "v2")]);
//! assert!(store.txn(update).await?.succeeded);
//! # Ok(())
//! # }
//! ```

mod watch;

/// The `etcd-client` crate this backend is built on, for callers that build their own client
/// ([`EtcdStore::from_client`]) or talk to etcd directly.
pub use etcd_client;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::proto::{PbKeyValue, PbRangeResponse, PbTxnOpResponse};
use etcd_client::{
    Client, CompactionOptions, CompareOp as EtcdCompareOp, ConnectOptions, DeleteOptions,
    GetOptions, KvClient, LeaseClient, MaintenanceClient, PutOptions, TxnOp, WatchClient,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use orchestra_core::store::{
    Compare, CompareOp, CompareTarget, KeyRange, KeyValue, Lease, LeaseId, Op, OpResponse,
    RangeRequest, RangeResponse, Result, Revision, Store, StoreError, Txn, TxnResponse,
    WatchRequest, WatchStream,
};

/// The largest message the store takes from etcd (etcd's own limit on what it sends).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// How to connect an [`EtcdStore`]: the key prefix, time-outs and credentials.
///
/// The defaults: no key prefix, a 5 s time-out per request, 2 s to connect to a member, HTTP/2
/// keep-alive pings every 10 s on open streams (a member that does not answer within 5 s is
/// given up), watches resumed for up to 10 s after their stream broke, no credentials.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use orchestra_store::etcd::EtcdOptions;
///
/// let options = EtcdOptions::new()
///     .key_prefix("/orchestra/")
///     .request_timeout(Duration::from_secs(2));
/// assert_eq!(options.prefix(), "/orchestra/");
/// ```
#[derive(Clone)]
pub struct EtcdOptions {
    key_prefix: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    keep_alive: Option<(Duration, Duration)>,
    watch_resume: Duration,
    user: Option<(String, String)>,
}

impl EtcdOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> EtcdOptions {
        EtcdOptions {
            key_prefix: String::new(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            keep_alive: Some((Duration::from_secs(10), Duration::from_secs(5))),
            watch_resume: Duration::from_secs(10),
            user: None,
        }
    }

    /// Puts `prefix` before every key the store sends and takes it off every key it returns (see
    /// [the module documentation](self#the-key-prefix)): stores whose prefixes are not prefixes
    /// of one another share an etcd without seeing each other's keys. Empty (the default): no
    /// prefix.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> EtcdOptions {
        self.key_prefix = prefix.into();
        self
    }

    /// How long a request may take before it fails with [`StoreError::Unavailable`] (for a
    /// watch, how long etcd may take to create it).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> EtcdOptions {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting to one member may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> EtcdOptions {
        self.connect_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive pings every `interval` while a stream is open, giving a member up after
    /// `timeout` without an answer (etcd refuses pings more often than every 5 s by default).
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> EtcdOptions {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// How long a watch whose stream broke keeps trying to open it again before it yields
    /// [`StoreError::Unavailable`] and ends (zero: it does not try).
    #[must_use]
    pub fn watch_resume(mut self, period: Duration) -> EtcdOptions {
        self.watch_resume = period;
        self
    }

    /// Authenticates as `name` (etcd's role-based access control).
    #[must_use]
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> EtcdOptions {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.key_prefix
    }
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions::new()
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("key_prefix", &self.key_prefix)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("watch_resume", &self.watch_resume)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

/// The [`Store`] on etcd: see the [module documentation](self) for what maps to what.
///
/// `EtcdStore` is cheap to clone (clones share the connections) and needs no lock: calls run
/// concurrently over etcd's gRPC connections (HTTP/2, many requests on one connection), to one
/// member at a time (see [fail-over](self#members-and-fail-over)).
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

/// The clients of one etcd member (or, for a store made [from a client](EtcdStore::from_client),
/// of whatever the client connects to).
struct Member {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    maintenance: MaintenanceClient,
}

impl Member {
    fn new(client: &Client) -> Member {
        Member {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            lease: client.lease_client(),
            maintenance: client.maintenance_client(),
        }
    }
}

/// What the clones of a store share.
struct Shared {
    /// The members, one client each.
    members: Vec<Member>,
    /// The member requests go to (modulo their number): the store sticks to one member until a
    /// request to it fails as unavailable, then moves on to the next.
    pinned: AtomicUsize,
    /// Whether a call is looking for a healthy member.
    probing: AtomicBool,
    /// The key prefix.
    prefix: String,
    /// The highest compaction revision this store has seen (0: none), a lower bound of etcd's.
    compacted: AtomicI64,
    /// How long etcd may take to create a watch or answer on a lease stream.
    request_timeout: Duration,
    /// How long a broken watch keeps trying to open again.
    watch_resume: Duration,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port` or `host:port`, one per member) and
    /// checks that it answers; requests fail over between the members as the
    /// [module documentation](self#members-and-fail-over) tells.
    ///
    /// Fails with [`StoreError::Unavailable`] when no endpoint answers within the request
    /// time-out, and with [`StoreError::InvalidRequest`] for an empty or malformed endpoint list
    /// or credentials etcd refuses.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        options: EtcdOptions,
    ) -> Result<EtcdStore> {
        let list = endpoints
            .iter()
            .map(|endpoint| endpoint.as_ref())
            .collect::<Vec<_>>()
            .join(", ");
        if endpoints.is_empty() {
            return Err(invalid("no etcd endpoint given"));
        }
        let mut connect = ConnectOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_require_leader(true);
        if let Some((interval, timeout)) = options.keep_alive {
            connect = connect.with_keep_alive(interval, timeout);
        }
        if let Some((name, password)) = &options.user {
            connect = connect.with_user(name.clone(), password.clone());
        }
        // One client per member (a client connects lazily; with credentials it authenticates at
        // once, and a member that does not answer then is left out).
        let mut members = Vec::with_capacity(endpoints.len());
        let mut unavailable = None;
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            let client = tokio::time::timeout(
                options.request_timeout,
                Client::connect([endpoint], Some(connect.clone())),
            )
            .await
            .unwrap_or_else(|_| Err(etcd_client::Error::Internal("did not answer".to_owned())));
            match client {
                Ok(client) => members.push(Member::new(&client)),
                Err(error) => match classify(&error) {
                    Class::Unavailable(message) => {
                        unavailable = Some(format!("etcd at {endpoint}: {message}"));
                    }
                    _ => return Err(invalid(format!("etcd at {endpoint}: {error}"))),
                },
            }
        }
        if members.is_empty() {
            return Err(StoreError::Unavailable(
                unavailable.unwrap_or_else(|| format!("etcd at {list} did not answer")),
            ));
        }
        // Stores start on different members, to spread their load.
        let start = (std::process::id() as usize).wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.subsec_nanos() as usize),
        );
        let store = EtcdStore::with_members(members, start, &options);
        store
            .current_revision()
            .await
            .map_err(|error| match error {
                StoreError::Unavailable(message) => {
                    StoreError::Unavailable(format!("etcd at {list} does not answer: {message}"))
                }
                other => other,
            })?;
        Ok(store)
    }

    /// A store on a client connected already (for TLS, or options this type does not offer),
    /// with the key prefix, the watch-creation time-out and the watch resumption of `options`
    /// (its other options are the client's business). Nothing is sent. The client balances the
    /// requests over its endpoints itself, so the store's own fail-over (see
    /// [`connect`](Self::connect)) does not apply.
    pub fn from_client(client: &Client, options: &EtcdOptions) -> EtcdStore {
        EtcdStore::with_members(vec![Member::new(client)], 0, options)
    }

    fn with_members(members: Vec<Member>, start: usize, options: &EtcdOptions) -> EtcdStore {
        EtcdStore {
            shared: Arc::new(Shared {
                pinned: AtomicUsize::new(start % members.len().max(1)),
                probing: AtomicBool::new(false),
                members,
                prefix: options.key_prefix.clone(),
                compacted: AtomicI64::new(0),
                request_timeout: options.request_timeout,
                watch_resume: options.watch_resume,
            }),
        }
    }

    /// The key prefix (empty: none).
    pub fn key_prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The revision of etcd's last compaction: the oldest revision still readable (0 before the
    /// first compaction).
    ///
    /// etcd does not tell its compaction revision, so the store finds it with cheap count-only
    /// reads: one when it knows the last compaction already (it remembers the compactions it made
    /// or was told about), a binary search of at most about 60 otherwise.
    pub async fn compact_revision(&self) -> Result<Revision> {
        let readable = |revision: Revision| async move {
            match self.probe(Some(revision)).await {
                Ok(_) => Ok(true),
                Err(Class::Compacted) => Ok(false),
                Err(class) => Err(class.into_error()),
            }
        };
        let current = self.current_revision().await?;
        let mut low = self
            .shared
            .compacted
            .load(Ordering::Relaxed)
            .min(current)
            .max(1);
        if readable(low).await? {
            return Ok(if low == 1 { 0 } else { low });
        }
        // `low` is compacted and `high` (the present) is not: find the first readable revision.
        let mut high = current;
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if readable(middle).await? {
                high = middle;
            } else {
                low = middle;
            }
        }
        self.shared.compacted.fetch_max(high, Ordering::Relaxed);
        Ok(high)
    }

    // -----------------------------------------------------------------------------------------
    // Keys.

    /// The etcd key of a store key.
    fn key(&self, key: &str) -> Vec<u8> {
        let prefix = self.shared.prefix.as_bytes();
        let mut out = Vec::with_capacity(prefix.len() + key.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// etcd's `key` and `range_end` for a range, or `None` when the range covers no key at all
    /// (a `Range` whose end is not after its start).
    fn span(&self, range: &KeyRange) -> Option<(Vec<u8>, Vec<u8>)> {
        match range {
            KeyRange::Key(key) => Some((self.key(key), Vec::new())),
            KeyRange::Prefix(prefix) => {
                let start = self.key(prefix);
                if start.is_empty() {
                    // etcd's "every key".
                    Some((vec![0], vec![0]))
                } else {
                    let end = prefix_end(&start);
                    Some((start, end))
                }
            }
            KeyRange::Range { start, end } => {
                if end <= start {
                    return None;
                }
                let mut first = self.key(start);
                if first.is_empty() {
                    // The first key there can be: etcd refuses an empty key.
                    first.push(0);
                }
                Some((first, self.key(end)))
            }
        }
    }

    /// Like [`span`](Self::span), with the empty range as a range etcd reads as empty (a start
    /// that is its own end), for reads, whose revision etcd must still check.
    fn read_span(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        self.span(range)
            .unwrap_or_else(|| (EMPTY_SPAN.to_vec(), EMPTY_SPAN.to_vec()))
    }

    /// The store key of an etcd key: the key prefix taken off.
    fn store_key(&self, mut key: Vec<u8>) -> Result<String> {
        let prefix = self.shared.prefix.as_bytes();
        if !key.starts_with(prefix) {
            return Err(StoreError::Unavailable(format!(
                "etcd returned a key outside the key prefix {:?}: {:?}",
                self.shared.prefix,
                String::from_utf8_lossy(&key)
            )));
        }
        key.drain(..prefix.len());
        String::from_utf8(key).map_err(|error| {
            invalid(format!(
                "etcd holds a key that is not UTF-8: {:?}",
                String::from_utf8_lossy(error.as_bytes())
            ))
        })
    }

    /// A store key-value of an etcd one.
    fn key_value(&self, kv: PbKeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.store_key(kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: (kv.lease != 0).then_some(kv.lease),
        })
    }

    /// The answer to a read from etcd's, which read at `revision`.
    fn range_response(
        &self,
        response: PbRangeResponse,
        count_only: bool,
        revision: Revision,
    ) -> Result<RangeResponse> {
        let kvs = response
            .kvs
            .into_iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>>>()?;
        let count = usize::try_from(response.count).unwrap_or(0);
        Ok(RangeResponse {
            more: !count_only && count > kvs.len(),
            count,
            kvs,
            revision,
        })
    }

    /// The options of a read (the key range apart).
    fn get_options(request: &RangeRequest, range_end: Vec<u8>) -> GetOptions {
        let mut options = GetOptions::new().with_range(range_end);
        match (request.count_only, request.limit) {
            // etcd reads a limit of 0 as "no limit": count instead.
            (true, _) | (false, Some(0)) => options = options.with_count_only(),
            (false, Some(limit)) => {
                options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            (false, None) => {}
        }
        if let Some(revision) = request.revision {
            options = options.with_revision(revision);
        }
        options
    }

    /// A count-only read of one key, at a revision or now: etcd's revision then.
    async fn probe(&self, revision: Option<Revision>) -> Result<Revision, Class> {
        let key = if self.shared.prefix.is_empty() {
            vec![0]
        } else {
            self.shared.prefix.as_bytes().to_vec()
        };
        let mut options = GetOptions::new().with_count_only();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = self
            .send(|member| {
                let (mut kv, key, options) = (member.kv.clone(), key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(|error| classify(&error))?;
        header_revision(response.0.header.as_ref()).map_err(Class::from)
    }

    // -----------------------------------------------------------------------------------------
    // Errors.

    /// The error for a class of etcd error, with the revisions and lease filled in: `asked` is
    /// the revision the request asked for (the lowest, for a compacted one, the highest, for a
    /// future one), `leases` the leases it used.
    async fn error(&self, class: Class, asked: &[Revision], leases: &[LeaseId]) -> StoreError {
        match class {
            Class::Compacted => {
                let revision = asked.iter().copied().min().unwrap_or(0);
                let compact_revision = match self.compact_revision().await {
                    Ok(compacted) => compacted,
                    Err(_) => self
                        .shared
                        .compacted
                        .load(Ordering::Relaxed)
                        .max(revision + 1),
                };
                StoreError::Compacted {
                    revision,
                    compact_revision,
                }
            }
            Class::FutureRevision => {
                let revision = asked.iter().copied().max().unwrap_or(0);
                let current = self
                    .current_revision()
                    .await
                    .unwrap_or(revision.saturating_sub(1));
                StoreError::FutureRevision { revision, current }
            }
            Class::LeaseNotFound => {
                let mut gone = leases.first().copied().unwrap_or(0);
                if leases.len() > 1 {
                    for &lease in leases {
                        if matches!(
                            self.lease_time_to_live(lease).await,
                            Err(StoreError::LeaseNotFound(_))
                        ) {
                            gone = lease;
                            break;
                        }
                    }
                }
                StoreError::LeaseNotFound(gone)
            }
            other => other.into_error(),
        }
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("key_prefix", &self.shared.prefix)
            .field(
                "compact_revision",
                &self.shared.compacted.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        check_range(&request.range)?;
        if let Some(revision) = request.revision {
            check_revision(revision)?;
        }
        let (key, range_end) = self.read_span(&request.range);
        let options = EtcdStore::get_options(&request, range_end);
        let get = self.send(|member| {
            let (mut kv, key, options) = (member.kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        });
        let response = match get.await {
            Ok(response) => response.0,
            Err(error) => {
                let asked: Vec<Revision> = request.revision.into_iter().collect();
                return Err(self.error(classify(&error), &asked, &[]).await);
            }
        };
        let revision = match request.revision {
            Some(revision) => revision,
            None => header_revision(response.header.as_ref())?,
        };
        self.range_response(response, request.count_only, revision)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        check_txn(&txn)?;
        let mut asked = Vec::new();
        let mut leases = Vec::new();
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                Op::Range(RangeRequest {
                    revision: Some(revision),
                    ..
                }) => asked.push(*revision),
                Op::Put {
                    lease: Some(lease), ..
                } if !leases.contains(lease) => leases.push(*lease),
                _ => {}
            }
        }
        let success_slots = self.slots(&txn.success);
        let failure_slots = self.slots(&txn.failure);
        let request = self.send(|member| {
            let mut kv = member.kv.clone();
            let request = etcd_client::Txn::new()
                .when(
                    txn.compares
                        .iter()
                        .map(|compare| self.compare(compare))
                        .collect::<Vec<_>>(),
                )
                .and_then(self.ops(&txn.success))
                .or_else(self.ops(&txn.failure));
            async move { kv.txn(request).await }
        });
        let response = match request.await {
            Ok(response) => response.0,
            Err(error) => return Err(self.error(classify(&error), &asked, &leases).await),
        };
        let revision = header_revision(response.header.as_ref())?;
        let slots = if response.succeeded {
            success_slots
        } else {
            failure_slots
        };
        let answers: Vec<Option<PbTxnOpResponse>> = response
            .responses
            .into_iter()
            .map(|answer| answer.response)
            .collect();
        if answers.len() != slots.iter().filter(|slot| slot.sent()).count() {
            return Err(StoreError::Unavailable(
                "etcd answered a transaction with the wrong number of responses".to_owned(),
            ));
        }
        // Whether the transaction wrote: a range before the first write saw the revision before.
        let wrote = {
            let mut answers = answers.iter();
            slots.iter().any(|slot| match slot {
                Slot::Put => {
                    answers.next();
                    true
                }
                Slot::Delete => matches!(
                    answers.next(),
                    Some(Some(PbTxnOpResponse::ResponseDeleteRange(delete))) if delete.deleted > 0
                ),
                Slot::Range { .. } => {
                    answers.next();
                    false
                }
                Slot::NoDelete => false,
            })
        };
        let mut changed = false;
        let mut answers = answers.into_iter();
        let mut responses = Vec::with_capacity(slots.len());
        for slot in slots {
            let answer = if slot.sent() {
                answers.next().flatten()
            } else {
                None
            };
            responses.push(match (slot, answer) {
                (Slot::Put, Some(PbTxnOpResponse::ResponsePut(put))) => {
                    changed = true;
                    OpResponse::Put {
                        prev_kv: put.prev_kv.map(|kv| self.key_value(kv)).transpose()?,
                    }
                }
                (Slot::Delete, Some(PbTxnOpResponse::ResponseDeleteRange(delete))) => {
                    changed |= delete.deleted > 0;
                    OpResponse::Delete {
                        deleted: delete
                            .prev_kvs
                            .into_iter()
                            .map(|kv| self.key_value(kv))
                            .collect::<Result<_>>()?,
                    }
                }
                (Slot::NoDelete, _) => OpResponse::Delete {
                    deleted: Vec::new(),
                },
                (
                    Slot::Range {
                        revision: at,
                        count_only,
                    },
                    Some(PbTxnOpResponse::ResponseRange(range)),
                ) => {
                    let seen = match at {
                        Some(at) => at,
                        None if changed || !wrote => revision,
                        None => revision - 1,
                    };
                    OpResponse::Range(self.range_response(range, count_only, seen)?)
                }
                _ => {
                    return Err(StoreError::Unavailable(
                        "etcd answered a transaction operation with another kind of response"
                            .to_owned(),
                    ));
                }
            });
        }
        Ok(TxnResponse {
            succeeded: response.succeeded,
            revision,
            responses,
        })
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        check_range(&request.range)?;
        if let Some(revision) = request.start_revision {
            check_revision(revision)?;
        }
        if request.progress_notify.is_some_and(|every| every.is_zero()) {
            return Err(invalid(
                "the progress notification interval must not be zero",
            ));
        }
        watch::open(self.clone(), request).await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        if ttl.is_zero() {
            return Err(invalid("a lease's time to live must not be zero"));
        }
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds =
            i64::try_from(seconds).map_err(|_| invalid("the lease's time to live is too long"))?;
        let response = self
            .send(|member| {
                let mut lease = member.lease.clone();
                async move { lease.grant(seconds, None).await }
            })
            .await
            .map_err(|error| classify(&error).into_error())?
            .0;
        if !response.error.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "etcd did not grant the lease: {}",
                response.error
            )));
        }
        Ok(Lease {
            id: response.id,
            ttl: Duration::from_secs(u64::try_from(response.ttl).unwrap_or(0)),
        })
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        let renew = async {
            // The client opens the stream, renews once and checks the answer, but keeps its time
            // to live to itself: renew once more on the same stream to read it.
            let (mut keeper, mut answers) = self
                .send(|member| {
                    let mut lease = member.lease.clone();
                    async move { lease.keep_alive(id).await }
                })
                .await?;
            keeper.keep_alive().await?;
            answers.message().await
        };
        let answer = tokio::time::timeout(self.shared.request_timeout, renew)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("etcd did not renew lease {id} in time"))
            })?;
        match answer {
            Ok(Some(answer)) if answer.0.ttl > 0 => Ok(Duration::from_secs(
                u64::try_from(answer.0.ttl).unwrap_or(0),
            )),
            Ok(Some(_)) => Err(StoreError::LeaseNotFound(id)),
            Ok(None) => Err(StoreError::Unavailable(
                "etcd closed the lease keep-alive stream".to_owned(),
            )),
            Err(error) => Err(match classify(&error) {
                Class::LeaseNotFound => StoreError::LeaseNotFound(id),
                class => class.into_error(),
            }),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let revoke = self.send(|member| {
            let mut lease = member.lease.clone();
            async move { lease.revoke(id).await }
        });
        match revoke.await {
            Ok(_) => Ok(()),
            Err(error) => Err(match classify(&error) {
                Class::LeaseNotFound => StoreError::LeaseNotFound(id),
                class => class.into_error(),
            }),
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration> {
        let time_to_live = self.send(|member| {
            let mut lease = member.lease.clone();
            async move { lease.time_to_live(id, None).await }
        });
        let response = match time_to_live.await {
            Ok(response) => response.0,
            Err(error) => {
                return Err(match classify(&error) {
                    Class::LeaseNotFound => StoreError::LeaseNotFound(id),
                    class => class.into_error(),
                });
            }
        };
        // etcd answers -1 for a lease it does not know (never granted, revoked or expired).
        u64::try_from(response.ttl)
            .map(Duration::from_secs)
            .map_err(|_| StoreError::LeaseNotFound(id))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        check_revision(revision)?;
        let known = self.shared.compacted.load(Ordering::Relaxed);
        if revision <= known {
            return Err(StoreError::Compacted {
                revision,
                compact_revision: known,
            });
        }
        let compaction = self.send(|member| {
            let mut kv = member.kv.clone();
            async move {
                kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                    .await
            }
        });
        match compaction.await {
            Ok(_) => {
                self.shared.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(self.error(classify(&error), &[revision], &[]).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.probe(None).await.map_err(Class::into_error)
    }

    /// A plain etcd `Put` (one write, no transaction), as a caller of `etcd-client` would send.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_key(key)?;
        let etcd_key = self.key(key);
        let put = self.send(|member| {
            let (mut kv, key, value) = (member.kv.clone(), etcd_key.clone(), value.to_vec());
            async move { kv.put(key, value, None).await }
        });
        match put.await {
            Ok(response) => header_revision(response.0.header.as_ref()),
            Err(error) => Err(self.error(classify(&error), &[], &[]).await),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions.

/// What became of one operation of a transaction branch.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// A put, sent.
    Put,
    /// A delete, sent.
    Delete,
    /// A delete of an empty range, not sent: it deletes nothing.
    NoDelete,
    /// A read, sent.
    Range {
        revision: Option<Revision>,
        count_only: bool,
    },
}

impl Slot {
    fn sent(self) -> bool {
        !matches!(self, Slot::NoDelete)
    }
}

impl EtcdStore {
    /// etcd's compare for a store compare.
    fn compare(&self, compare: &Compare) -> etcd_client::Compare {
        let op = match compare.op {
            CompareOp::Equal => EtcdCompareOp::Equal,
            CompareOp::NotEqual => EtcdCompareOp::NotEqual,
            CompareOp::Greater => EtcdCompareOp::Greater,
            CompareOp::Less => EtcdCompareOp::Less,
        };
        let key = self.key(&compare.key);
        match &compare.target {
            CompareTarget::ModRevision(revision) => {
                etcd_client::Compare::mod_revision(key, op, *revision)
            }
            CompareTarget::CreateRevision(revision) => {
                etcd_client::Compare::create_revision(key, op, *revision)
            }
            CompareTarget::Version(version) => etcd_client::Compare::version(key, op, *version),
            CompareTarget::Value(value) => etcd_client::Compare::value(key, op, value.to_vec()),
            CompareTarget::Lease(lease) => etcd_client::Compare::lease(key, op, *lease),
        }
    }

    /// What becomes of each operation of a branch.
    fn slots(&self, ops: &[Op]) -> Vec<Slot> {
        ops.iter()
            .map(|op| match op {
                Op::Put { .. } => Slot::Put,
                Op::Delete(range) if self.span(range).is_none() => Slot::NoDelete,
                Op::Delete(_) => Slot::Delete,
                Op::Range(request) => Slot::Range {
                    revision: request.revision,
                    count_only: request.count_only,
                },
            })
            .collect()
    }

    /// etcd's operations for a branch (the deletes of empty ranges left out).
    fn ops(&self, ops: &[Op]) -> Vec<TxnOp> {
        let mut sent = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let mut options = PutOptions::new().with_prev_key();
                    if let Some(lease) = lease {
                        options = options.with_lease(*lease);
                    }
                    sent.push(TxnOp::put(self.key(key), value.to_vec(), Some(options)));
                }
                Op::Delete(range) => {
                    if let Some((key, range_end)) = self.span(range) {
                        let options = DeleteOptions::new().with_range(range_end).with_prev_key();
                        sent.push(TxnOp::delete(key, Some(options)));
                    }
                }
                Op::Range(request) => {
                    let (key, range_end) = self.read_span(&request.range);
                    let options = EtcdStore::get_options(request, range_end);
                    sent.push(TxnOp::get(key, Some(options)));
                }
            }
        }
        sent
    }
}

impl EtcdStore {
    /// Runs an etcd call on the member the store sticks to. When the call failed before
    /// reaching the member (the connection could not be made), etcd never saw it, so it is sent
    /// again at once, to the next member, until every member was tried twice. When it fails as
    /// unavailable otherwise (a time-out: the member or its leader hangs; no leader; overload),
    /// the store [looks for a healthy member](Self::fail_over) for the calls after it, and the
    /// caller gets the error (the call may have been applied).
    async fn send<T, F, Fut>(&self, mut call: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(&Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let members = &self.shared.members;
        let mut tries = 0;
        loop {
            let index = self.shared.pinned.load(Ordering::Relaxed) % members.len().max(1);
            let Some(member) = members.get(index) else {
                return Err(etcd_client::Error::Internal("no etcd member".to_owned()));
            };
            match call(member).await {
                Err(error) if unsent(&error) && tries + 1 < 2 * members.len() => {
                    tries += 1;
                    // Move on, unless a concurrent call did already.
                    let next = (index + 1) % members.len();
                    let _ = self.shared.pinned.compare_exchange(
                        index,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Err(error) if matches!(classify(&error), Class::Unavailable(_)) => {
                    self.fail_over(index).await;
                    return Err(error);
                }
                answer => return answer,
            }
        }
    }
}

impl EtcdStore {
    /// After a call to member `failed` failed as unavailable: asks every member for its status
    /// at once and sticks to the first that answers with a leader (the failed one too: the fault
    /// may have been its leader's, and etcd elected another), within [`PROBE_TIMEOUT`]; else
    /// moves on to the next member. One call looks at a time; the others just move on.
    async fn fail_over(&self, failed: usize) {
        let members = &self.shared.members;
        let next = (failed + 1) % members.len().max(1);
        if members.len() < 2 || self.shared.probing.swap(true, Ordering::AcqRel) {
            let _ = self.shared.pinned.compare_exchange(
                failed,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        // Lowers the flag however this ends (the caller may drop the call midway).
        struct Probing<'a>(&'a AtomicBool);
        impl Drop for Probing<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _probing = Probing(&self.shared.probing);
        let mut probes: FuturesUnordered<_> = members
            .iter()
            .enumerate()
            .map(|(index, member)| {
                let mut maintenance = member.maintenance.clone();
                async move { (index, maintenance.status().await) }
            })
            .collect();
        let timeout = PROBE_TIMEOUT.min(self.shared.request_timeout);
        let healthy = tokio::time::timeout(timeout, async {
            while let Some((index, status)) = probes.next().await {
                if status.is_ok_and(|status| status.leader() != 0) {
                    return Some(index);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        self.shared
            .pinned
            .store(healthy.unwrap_or(next), Ordering::Relaxed);
    }
}

/// How long a look for a healthy member waits for their answers at most.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether an error says that the request never reached a member (the connection could not be
/// made).
fn unsent(error: &etcd_client::Error) -> bool {
    const UNAVAILABLE: i32 = 14;
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            i32::from(status.code()) == UNAVAILABLE && status.message().contains("connect error")
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// What an etcd error means to the store, before the revisions and leases are filled in.
#[derive(Debug)]
enum Class {
    Compacted,
    FutureRevision,
    LeaseNotFound,
    Invalid(String),
    Unavailable(String),
}

impl Class {
    /// The error, with what can be filled in without asking etcd.
    fn into_error(self) -> StoreError {
        match self {
            Class::Compacted => StoreError::Compacted {
                revision: 0,
                compact_revision: 0,
            },
            Class::FutureRevision => StoreError::FutureRevision {
                revision: 0,
                current: 0,
            },
            Class::LeaseNotFound => StoreError::LeaseNotFound(0),
            Class::Invalid(message) => StoreError::InvalidRequest(message),
            Class::Unavailable(message) => StoreError::Unavailable(message),
        }
    }
}

impl From<StoreError> for Class {
    fn from(error: StoreError) -> Class {
        match error {
            StoreError::InvalidRequest(message) => Class::Invalid(message),
            other => Class::Unavailable(other.to_string()),
        }
    }
}

/// What an etcd client error means: etcd's errors by their messages (stable across etcd
/// versions, and the only thing that tells, say, a compacted revision from a future one), the
/// rest by their gRPC code or kind.
fn classify(error: &etcd_client::Error) -> Class {
    use etcd_client::Error;

    match error {
        Error::GRpcStatus(status) => classify_status(i32::from(status.code()), status.message()),
        Error::LeaseKeepAliveError(message) if message.contains("lease not found") => {
            Class::LeaseNotFound
        }
        Error::InvalidArgs(_) | Error::InvalidUri(_) | Error::Utf8Error(_) => {
            Class::Invalid(error.to_string())
        }
        _ => Class::Unavailable(error.to_string()),
    }
}

/// What a gRPC status from etcd means (`code` as the gRPC specification numbers them).
fn classify_status(code: i32, message: &str) -> Class {
    if message.contains("required revision has been compacted") {
        Class::Compacted
    } else if message.contains("required revision is a future revision") {
        Class::FutureRevision
    } else if message.contains("lease not found") {
        Class::LeaseNotFound
    } else {
        match code {
            // InvalidArgument, NotFound, AlreadyExists, PermissionDenied, FailedPrecondition,
            // OutOfRange, Unimplemented, Unauthenticated: etcd will not take the request.
            3 | 5 | 6 | 7 | 9 | 11 | 12 | 16 => Class::Invalid(format!("etcd: {message}")),
            // Unavailable (no leader, leader changed, request timed out, the connection),
            // DeadlineExceeded and Cancelled (time-outs), ResourceExhausted (too many requests,
            // the space quota), Aborted, Internal, DataLoss, Unknown.
            _ => Class::Unavailable(format!("etcd: {message}")),
        }
    }
}

/// The revision in an etcd response header.
fn header_revision(header: Option<&etcd_client::proto::PbResponseHeader>) -> Result<Revision> {
    header
        .map(|header| header.revision)
        .ok_or_else(|| StoreError::Unavailable("etcd sent a response without a header".to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Checks on the client side.

/// A range that covers no key, as etcd reads it (a start that is its own end).
const EMPTY_SPAN: &[u8] = &[1];

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidRequest(message.into())
}

/// The first key after every key that starts with `prefix`, byte-wise as etcd orders keys
/// (`[0]`, etcd's "to the end", when there is none).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
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

fn check_revision(revision: Revision) -> Result<()> {
    if revision < 1 {
        Err(invalid("revisions start at 1"))
    } else {
        Ok(())
    }
}

fn check_txn(txn: &Txn) -> Result<()> {
    for compare in &txn.compares {
        check_key(&compare.key)?;
    }
    check_branch(&txn.success)?;
    check_branch(&txn.failure)
}

/// Every key of a branch is written at most once, no key is empty, read revisions start at 1.
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
            Op::Range(request) => {
                check_range(&request.range)?;
                if let Some(revision) = request.revision {
                    check_revision(revision)?;
                }
            }
        }
    }
    for (index, span) in spans.iter().enumerate() {
        // A span is contiguous in key order: if a written key is in it, the first written key at
        // or after its start is.
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

/// Whether two key ranges share a key: each covers a contiguous run of keys from its start (if
/// any), so they share one exactly when both cover one of the two starts.
fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    [a.start(), b.start()]
        .into_iter()
        .any(|key| a.contains(key) && b.contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_after_their_keys() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn branches_write_each_key_once() {
        let put = |k: &str| Op::put(k, "v");
        let prefix = |p: &str| KeyRange::Prefix(p.into());
        let span = |start: &str, end: &str| KeyRange::Range {
            start: start.into(),
            end: end.into(),
        };
        assert!(check_branch(&[put("a"), put("b"), Op::Delete(prefix("c"))]).is_ok());
        assert!(check_branch(&[put("a"), put("a")]).is_err());
        assert!(check_branch(&[put("a"), Op::delete("a")]).is_err());
        assert!(check_branch(&[Op::Delete(prefix("a")), put("ab")]).is_err());
        assert!(check_branch(&[put("b"), Op::Delete(span("a", "c"))]).is_err());
        assert!(check_branch(&[put("c"), Op::Delete(span("a", "c"))]).is_ok());
        assert!(check_branch(&[Op::Delete(prefix("a")), Op::Delete(span("a", "b"))]).is_err());
        assert!(check_branch(&[put("")]).is_err());
        assert!(check_branch(&[Op::Range(RangeRequest::key("k").at(0))]).is_err());
    }

    #[test]
    fn errors_are_classified_by_etcd_message_and_code() {
        const OUT_OF_RANGE: i32 = 11;
        let compacted = "etcdserver: mvcc: required revision has been compacted";
        assert!(matches!(
            classify_status(OUT_OF_RANGE, compacted),
            Class::Compacted
        ));
        let future = "etcdserver: mvcc: required revision is a future revision";
        assert!(matches!(
            classify_status(OUT_OF_RANGE, future),
            Class::FutureRevision
        ));
        let lease = "etcdserver: requested lease not found";
        assert!(matches!(classify_status(5, lease), Class::LeaseNotFound));
        let large = "etcdserver: request is too large";
        assert!(matches!(classify_status(3, large), Class::Invalid(_)));
        // Unavailable, DeadlineExceeded, Cancelled, ResourceExhausted, Unknown.
        for code in [14, 4, 1, 8, 2] {
            assert!(matches!(
                classify_status(code, "etcdserver: leader changed"),
                Class::Unavailable(_)
            ));
        }
    }

    #[test]
    fn options_hide_the_password() {
        let options = EtcdOptions::new().user("root", "secret");
        let shown = format!("{options:?}");
        assert!(
            shown.contains("root") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
