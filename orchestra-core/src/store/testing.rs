//! The store conformance suite: the [`Store`] contract as cases that every backend runs.
//!
//! A backend proves that it keeps the [contract](super#the-contract) by passing every case here.
//! Run them all in one test with [`run_conformance`], or one `#[tokio::test]` per case with
//! [`store_conformance_tests!`](crate::store_conformance_tests) (the better choice: a failure names
//! its case, and cases on stores of their own run in parallel):
//!
//! ```
//! // tests/conformance.rs of a backend crate, whose dev-dependencies have tokio with the
//! // `macros`, `rt-multi-thread` and `test-util` features.
//! orchestra_core::store_conformance_tests!(paused_time, || async {
//!     orchestra_core::store::MemoryStore::new()
//! });
//! # fn main() {}
//! ```
//!
//! A backend whose time cannot be paused (etcd keeps its own clock) says `real_time` instead of
//! `paused_time`.
//!
//! Each case is also a public async function taking the same `make` closure, which returns a
//! future of a store.
//!
//! # What the cases assume of the store
//!
//! The cases are written for backends whose revisions are global and whose key space is shared,
//! such as etcd: `make` may return a store that already holds other keys and is at any revision.
//! Each case works under a key prefix of its own, unique to the run, and takes every revision it
//! checks from the store's answers, relatively (a put must return the revision before it plus
//! one). So while a case runs, **no one else may write to the store**: a backend whose cases share
//! one server must run them one at a time (`--test-threads=1`, or a store wrapper holding a lock).
//! Compaction cases compact the whole store, up to revisions the case wrote.
//!
//! # Time
//!
//! The cases wait only with [`tokio::time::sleep`] and [`tokio::time::timeout`], so they work
//! both with paused time and in real time:
//!
//! - a store that measures time with [`tokio::time`] (as [`MemoryStore`](super::MemoryStore)
//!   does) runs them with paused time (`paused_time`, that is
//!   `#[tokio::test(start_paused = true)]`, a current-thread runtime): lease expiries and progress
//!   notifications then take no wall time, and every wait for something that never comes fails at
//!   once instead of after its timeout;
//! - a store with its own clock runs them in real time (`real_time`, a two-thread runtime). The
//!   lease cases use time-to-lives of 2 s (etcd's minimum), the progress case a 1 s interval, and
//!   every wait for an event gives up after 10 s; the lease and progress cases take a few seconds
//!   each.
//!
//! # Cases
//!
//! | case | what it checks |
//! |---|---|
//! | [`put_get_delete`] | a write advances the revision by one; create and mod revisions, versions (reset by a delete), previous values; a delete of nothing takes no revision; empty keys are refused |
//! | [`range_reads`] | one key, prefixes, key ranges, limit/`more`/`count`, `count_only`; reads at every past revision; [`StoreError::FutureRevision`] and [`StoreError::Compacted`] |
//! | [`txn_compares`] | compares on mod revision, create revision, version, value and lease with every operator, on present and missing keys; conjunction; the branch that runs |
//! | [`txn_atomicity`] | a multi-key transaction at one revision; range operations inside a transaction; transactions that change nothing take no revision; a key written twice in a branch (either branch), an empty key, an unknown lease or a future read revision fail the whole transaction, which then changes nothing |
//! | [`model_based`] | random sequences of puts, deletes, transactions, reads at past revisions and compactions, each answer checked against a reference model (proptest; 64 sequences of up to 40 operations, `PROPTEST_CASES` for more) |
//! | [`concurrent_compare_and_swap`] | 16 clients incrementing one counter with compare-and-swap on its mod revision: no lost update, every failed compare was stale, increments in revision order |
//! | [`watch_events`] | events in order, with all the changes of one revision in one response; prefix, range and key filters; `prev_kv`; the shape of delete events |
//! | [`watch_resume`] | a watch from any retained revision delivers exactly the suffix of the history from that revision |
//! | [`watch_many_watchers`] | 50 watchers of one prefix under a concurrent writer all see the same, gap-free events |
//! | [`watch_compacted`] | a watch from a compacted revision yields [`StoreError::Compacted`] and ends; from the compaction revision it works; from the future it fails; a slow watcher overtaken by compaction either gets every event or a gap-free prefix and then `Compacted` |
//! | [`watch_progress`] | progress notifications come when idle, carry a revision at or after the last event's and every write's, and only when asked for |
//! | [`lease_grant_revoke`] | grant, keep-alive, time to live, revoke; revoke deletes the attached keys at one revision (watchers see the deletes together); a put without a lease detaches a key; calls on a revoked lease fail with [`StoreError::LeaseNotFound`] |
//! | [`lease_expiry`] | keep-alives before the deadline prevent expiry; keys vanish on expiry, watchers see their deletes at one revision; an expired lease is gone; expiry happens without any watcher too |
//! | [`compaction`] | the state and the history from the compaction revision on stay intact; earlier history is gone; compacting backwards, twice to one revision, or to the future is an error |

// The suite's job is to fail loudly: it panics, with a message, on every broken promise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Write as _};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use tokio::time::{sleep, timeout};

use super::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyRange, KeyValue, LeaseId, Op,
    OpResponse, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, Txn, TxnResponse,
    WatchRequest, WatchResponse, WatchStream,
};

/// How long a case waits for something that should come (an event, an expiry).
const WAIT: Duration = Duration::from_secs(10);

/// The lease time to live of the expiry cases.
const TTL: Duration = Duration::from_secs(2);

/// Runs every case, each with a store of its own from `make`, one after another; panics with a
/// message naming the first case that fails.
pub async fn run_conformance<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {
            $(
                if let Err(payload) = AssertUnwindSafe($case(&make)).catch_unwind().await {
                    panic!(
                        "store conformance case `{}` failed: {}",
                        stringify!($case),
                        panic_message(payload.as_ref()),
                    );
                }
            )*
        };
    }
    run!(
        put_get_delete,
        range_reads,
        txn_compares,
        txn_atomicity,
        model_based,
        concurrent_compare_and_swap,
        watch_events,
        watch_resume,
        watch_many_watchers,
        watch_compacted,
        watch_progress,
        lease_grant_revoke,
        lease_expiry,
        compaction,
    );
}

/// One `#[tokio::test]` per conformance case, each running the case on a store from `make` (an
/// expression of a closure that returns a future of a store, evaluated once per test).
///
/// The first argument chooses the runtime: `paused_time` (a current-thread runtime with paused
/// time, for stores that measure time with `tokio::time`) or `real_time` (a two-thread runtime).
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features, and
/// `test-util` for `paused_time`. The tests are named after the cases; invoke the macro in a
/// module of its own if the names could clash.
///
/// # Examples
///
/// ```
/// orchestra_core::store_conformance_tests!(paused_time, || async {
///     orchestra_core::store::MemoryStore::new()
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (paused_time, $make:expr $(,)?) => {
        $crate::store_conformance_tests!(@cases (start_paused = true) $make);
    };
    (real_time, $make:expr $(,)?) => {
        $crate::store_conformance_tests!(
            @cases (flavor = "multi_thread", worker_threads = 2) $make
        );
    };
    (@cases $runtime:tt $make:expr) => {
        $crate::store_conformance_tests!(
            @each $runtime $make;
            put_get_delete,
            range_reads,
            txn_compares,
            txn_atomicity,
            model_based,
            concurrent_compare_and_swap,
            watch_events,
            watch_resume,
            watch_many_watchers,
            watch_compacted,
            watch_progress,
            lease_grant_revoke,
            lease_expiry,
            compaction
        );
    };
    (@each $runtime:tt $make:expr; $($case:ident),*) => {
        $(
            #[::tokio::test $runtime]
            async fn $case() {
                $crate::store::testing::$case($make).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// A key prefix no other case or run uses.
fn unique_prefix(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("/orchestra-conformance/{case}/{nanos:x}-{count}/")
}

fn b(value: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(value.as_ref())
}

trait OrFail<T> {
    /// The value, or a panic naming what failed.
    fn or_fail(self, what: &str) -> T;
}

impl<T> OrFail<T> for Result<T> {
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|error| panic!("{what}: unexpected error: {error:?}"))
    }
}

fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: b(value),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: None,
    }
}

fn put_event(kv: &KeyValue, prev: Option<&KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv: kv.clone(),
        prev_kv: prev.cloned(),
    }
}

fn delete_event(prev: &KeyValue, revision: Revision) -> Event {
    Event {
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
    }
}

fn without_prev(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .map(|event| Event {
            prev_kv: None,
            ..event.clone()
        })
        .collect()
}

fn single(op: Op) -> Txn {
    Txn::default().and_then([op])
}

fn put_leased(key: &str, value: &str, lease: LeaseId) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: b(value),
        lease: Some(lease),
    }
}

async fn current<S: Store>(store: &S) -> Revision {
    store.current_revision().await.or_fail("current_revision")
}

async fn read<S: Store>(store: &S, request: RangeRequest) -> RangeResponse {
    let what = format!("range {request:?}");
    store.range(request).await.or_fail(&what)
}

/// The next response of a watch, within [`WAIT`].
async fn next_response(stream: &mut WatchStream, what: &str) -> WatchResponse {
    match timeout(WAIT, stream.next()).await {
        Err(_) => panic!("{what}: no watch response within {WAIT:?}"),
        Ok(None) => panic!("{what}: the watch stream ended"),
        Ok(Some(Err(error))) => panic!("{what}: the watch failed: {error:?}"),
        Ok(Some(Ok(response))) => response,
    }
}

/// Checks one response against the one before (whose last event had revision `last`): events of
/// whole revisions, after `last`, in order, and the response's revision that of its last event.
/// Progress notifications must carry no event and a revision at or after `last`.
fn check_response(response: &WatchResponse, last: Revision, what: &str) {
    if response.progress {
        assert!(
            response.events.is_empty(),
            "{what}: a progress notification with events: {response:?}"
        );
        assert!(
            response.revision >= last,
            "{what}: a progress notification at revision {} after an event at {last}",
            response.revision
        );
        return;
    }
    let Some(final_event) = response.events.last() else {
        panic!("{what}: a watch response with no event that is no progress notification");
    };
    let mut previous = last;
    for event in &response.events {
        let revision = event.kv.mod_revision;
        assert!(
            revision > last,
            "{what}: revision {revision} delivered after {last} (a repeat, a revision split \
             across responses, or disorder): {response:?}"
        );
        assert!(
            revision >= previous,
            "{what}: events out of revision order: {response:?}"
        );
        previous = revision;
    }
    assert_eq!(
        response.revision, final_event.kv.mod_revision,
        "{what}: a response's revision is its last event's"
    );
}

/// Reads a watch until it has delivered revision `until` (within 10 s per response), checking
/// what the contract promises of each response: events of whole revisions, in revision order,
/// none repeated, the response's revision its last event's, and progress notifications without
/// events at a revision no earlier than the last event's. Returns the events; panics, naming
/// `what`, on a broken promise, an error, the end of the stream or a timeout.
pub async fn collect_events(stream: &mut WatchStream, until: Revision, what: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let mut last = 0;
    while last < until {
        let response = next_response(stream, what).await;
        check_response(&response, last, what);
        if response.progress {
            last = last.max(response.revision);
        } else {
            last = response.revision;
            events.extend(response.events);
        }
    }
    events
}

fn is_invalid<T: Debug>(result: &Result<T>) -> bool {
    matches!(result, Err(StoreError::InvalidRequest(_)))
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// Puts, gets and deletes one key at a time: every write advances the revision by one, keys
/// carry their create and mod revisions and versions (a delete resets the version), writes return
/// the previous values, a delete of nothing takes no revision, and empty keys are refused.
pub async fn put_get_delete<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let prefix = unique_prefix("put_get_delete");
    let key = format!("{prefix}key");
    let other = format!("{prefix}other");
    let r0 = current(&store).await;

    assert_eq!(store.get(&key).await.or_fail("get of a missing key"), None);
    assert_eq!(current(&store).await, r0, "a read takes no revision");

    let r1 = store.put(&key, b("v1")).await.or_fail("put");
    assert_eq!(r1, r0 + 1, "a put advances the revision by one");
    assert_eq!(current(&store).await, r1);
    let v1 = kv(&key, "v1", r1, r1, 1);
    assert_eq!(store.get(&key).await.or_fail("get"), Some(v1.clone()));

    let update = store
        .txn(single(Op::put(&key, "v2")))
        .await
        .or_fail("update");
    let r2 = r1 + 1;
    assert_eq!(
        update,
        TxnResponse {
            succeeded: true,
            revision: r2,
            responses: vec![OpResponse::Put {
                prev_kv: Some(v1.clone())
            }],
        },
        "an update returns the previous value"
    );
    let v2 = kv(&key, "v2", r1, r2, 2);
    assert_eq!(store.get(&key).await.or_fail("get"), Some(v2.clone()));

    let r3 = store.put(&other, b("o")).await.or_fail("put another key");
    assert_eq!(r3, r2 + 1);
    assert_eq!(
        store.get(&other).await.or_fail("get"),
        Some(kv(&other, "o", r3, r3, 1))
    );
    assert_eq!(
        store.get(&key).await.or_fail("get"),
        Some(v2.clone()),
        "a write to one key leaves the others"
    );

    let deletion = store.txn(single(Op::delete(&key))).await.or_fail("delete");
    let r4 = r3 + 1;
    assert_eq!(
        deletion,
        TxnResponse {
            succeeded: true,
            revision: r4,
            responses: vec![OpResponse::Delete {
                deleted: vec![v2.clone()]
            }],
        },
        "a delete returns what it deleted"
    );
    assert_eq!(store.get(&key).await.or_fail("get"), None);
    assert_eq!(current(&store).await, r4);

    let nothing = store
        .txn(single(Op::delete(&key)))
        .await
        .or_fail("delete again");
    assert_eq!(
        nothing,
        TxnResponse {
            succeeded: true,
            revision: r4,
            responses: vec![OpResponse::Delete { deleted: vec![] }],
        },
        "a delete of nothing takes no revision"
    );
    assert_eq!(store.delete(&key).await.or_fail("delete of nothing"), r4);

    let r5 = store.put(&key, b("v3")).await.or_fail("put after delete");
    assert_eq!(r5, r4 + 1);
    assert_eq!(
        store.get(&key).await.or_fail("get"),
        Some(kv(&key, "v3", r5, r5, 1)),
        "a key created again starts over: new create revision, version 1"
    );

    let r6 = store.put(&other, Bytes::new()).await.or_fail("empty value");
    assert_eq!(r6, r5 + 1);
    assert_eq!(
        store.get(&other).await.or_fail("get"),
        Some(kv(&other, "", r3, r6, 2)),
        "an empty value is a value"
    );

    assert!(
        is_invalid(&store.put("", b("x")).await),
        "put of an empty key"
    );
    assert!(is_invalid(&store.get("").await), "get of an empty key");
    assert!(
        is_invalid(&store.delete("").await),
        "delete of an empty key"
    );
    assert_eq!(
        current(&store).await,
        r6,
        "refused requests take no revision"
    );
}

/// Reads keys, prefixes and key ranges with limits and counts, now and at every past revision,
/// and the errors for revisions that are gone or not there yet.
pub async fn range_reads<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("range_reads");
    let k = |name: &str| format!("{p}{name}");
    let names = ["a", "b", "b/1", "b/2", "c"];
    let r0 = current(&store).await;
    let mut created = Vec::new();
    for name in names {
        let revision = store
            .put(&k(name), b(format!("{name}@1")))
            .await
            .or_fail("put");
        created.push(kv(&k(name), &format!("{name}@1"), revision, revision, 1));
    }
    let r5 = r0 + 5;
    assert_eq!(current(&store).await, r5);
    let keys = |response: &RangeResponse| -> Vec<String> {
        response.kvs.iter().map(|kv| kv.key.clone()).collect()
    };
    let names_of = |list: &[&str]| -> Vec<String> { list.iter().map(|name| k(name)).collect() };

    let all = read(&store, RangeRequest::prefix(&p)).await;
    assert_eq!(
        all,
        RangeResponse {
            kvs: created.clone(),
            more: false,
            count: 5,
            revision: r5
        }
    );
    let cases: Vec<(KeyRange, Vec<&str>)> = vec![
        (KeyRange::Prefix(k("b")), vec!["b", "b/1", "b/2"]),
        (KeyRange::Prefix(k("b/")), vec!["b/1", "b/2"]),
        (
            KeyRange::Range {
                start: k("b"),
                end: k("c"),
            },
            vec!["b", "b/1", "b/2"],
        ),
        (
            KeyRange::Range {
                start: k("b/1"),
                end: k("c0"),
            },
            vec!["b/1", "b/2", "c"],
        ),
        (
            KeyRange::Range {
                start: k("c"),
                end: k("a"),
            },
            vec![],
        ),
        (KeyRange::Key(k("b")), vec!["b"]),
        (KeyRange::Key(k("zz")), vec![]),
        (KeyRange::Prefix(k("zz")), vec![]),
    ];
    for (range, expected) in cases {
        let response = read(&store, RangeRequest::new(range.clone())).await;
        assert_eq!(keys(&response), names_of(&expected), "range {range:?}");
        assert_eq!(response.count, expected.len(), "count of {range:?}");
        assert!(!response.more, "more of {range:?}");
        assert_eq!(response.revision, r5);
    }

    let limited = read(&store, RangeRequest::prefix(&p).limit(2)).await;
    assert_eq!(keys(&limited), names_of(&["a", "b"]));
    assert_eq!((limited.count, limited.more), (5, true), "limit 2 of 5");
    for limit in [5, 10] {
        let response = read(&store, RangeRequest::prefix(&p).limit(limit)).await;
        assert_eq!(response.kvs, created, "limit {limit}");
        assert_eq!((response.count, response.more), (5, false), "limit {limit}");
    }
    let span = KeyRange::Range {
        start: k("b"),
        end: k("c"),
    };
    let limited = read(&store, RangeRequest::new(span).limit(1)).await;
    assert_eq!(keys(&limited), names_of(&["b"]));
    assert_eq!((limited.count, limited.more), (3, true));
    let mut counting = RangeRequest::prefix(&p);
    counting.count_only = true;
    let counted = read(&store, counting.clone()).await;
    assert_eq!(
        (counted.kvs.len(), counted.count, counted.more),
        (0, 5, false),
        "count_only"
    );
    let mut counting_b = RangeRequest::prefix(k("b"));
    counting_b.count_only = true;
    assert_eq!(read(&store, counting_b).await.count, 3);

    // History: change a, delete b/1, then change c and create d together.
    let r6 = store.put(&k("a"), b("a@2")).await.or_fail("update a");
    let r7 = store.delete(&k("b/1")).await.or_fail("delete b/1");
    let r8 = store
        .txn(Txn::default().and_then([Op::put(k("c"), "c@2"), Op::put(k("d"), "d@1")]))
        .await
        .or_fail("txn")
        .revision;
    assert_eq!((r6, r7, r8), (r5 + 1, r5 + 2, r5 + 3));
    let a2 = kv(&k("a"), "a@2", created[0].create_revision, r6, 2);
    let c2 = kv(&k("c"), "c@2", created[4].create_revision, r8, 2);
    let d1 = kv(&k("d"), "d@1", r8, r8, 1);
    let mut at = BTreeMap::new();
    at.insert(r0, vec![]);
    for (index, kv) in created.iter().enumerate() {
        at.insert(kv.mod_revision, created[..=index].to_vec());
    }
    let with = |list: &[&KeyValue]| list.iter().map(|kv| (*kv).clone()).collect::<Vec<_>>();
    let [ka, kb, kb1, kb2, kc] = [0, 1, 2, 3, 4].map(|index| &created[index]);
    at.insert(r6, with(&[&a2, kb, kb1, kb2, kc]));
    at.insert(r7, with(&[&a2, kb, kb2, kc]));
    at.insert(r8, with(&[&a2, kb, kb2, &c2, &d1]));
    for (&revision, expected) in &at {
        let response = read(&store, RangeRequest::prefix(&p).at(revision)).await;
        assert_eq!(&response.kvs, expected, "the prefix at revision {revision}");
        assert_eq!(response.count, expected.len());
        assert_eq!(
            response.revision, revision,
            "a read at a revision reports it"
        );
    }
    assert_eq!(
        read(&store, RangeRequest::prefix(&p)).await.kvs,
        at[&r8],
        "now"
    );
    let old = read(&store, RangeRequest::prefix(&p).at(r5).limit(2)).await;
    assert_eq!(old.kvs, vec![ka.clone(), kb.clone()]);
    assert_eq!((old.count, old.more), (5, true));
    let mut old_count = counting.clone().at(r7);
    old_count.limit = None;
    assert_eq!(read(&store, old_count).await.count, 4);
    assert_eq!(
        read(&store, RangeRequest::key(k("b/1")).at(r6)).await.kvs,
        vec![kb1.clone()],
        "a deleted key at a revision before its deletion"
    );

    let future = r8 + 1;
    match store.range(RangeRequest::prefix(&p).at(future)).await {
        Err(StoreError::FutureRevision { revision, .. }) => assert_eq!(revision, future),
        other => panic!("a read at future revision {future}: {other:?}"),
    }
    store.compact(r5).await.or_fail("compact");
    match store.range(RangeRequest::prefix(&p).at(r5 - 1)).await {
        Err(StoreError::Compacted { revision, .. }) => assert_eq!(revision, r5 - 1),
        other => panic!("a read at compacted revision {}: {other:?}", r5 - 1),
    }
    for revision in r5..=r8 {
        let response = read(&store, RangeRequest::prefix(&p).at(revision)).await;
        assert_eq!(
            response.kvs, at[&revision],
            "the prefix at {revision} after compacting to {r5}"
        );
    }
}

/// Every compare target with every operator, on a present key, a key with a lease and a missing
/// key; compares combine with AND; the branch that runs is the one the compares choose.
pub async fn txn_compares<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    use CompareOp::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{CreateRevision, Lease, ModRevision, Value, Version};

    let store = make().await;
    let p = unique_prefix("txn_compares");
    let key = format!("{p}key");
    let leased = format!("{p}leased");
    let missing = format!("{p}missing");
    let r1 = store.put(&key, b("m1")).await.or_fail("put");
    let r2 = store.put(&key, b("m2")).await.or_fail("put");
    let lease = store
        .lease_grant(Duration::from_secs(60))
        .await
        .or_fail("lease_grant");
    let r3 = store
        .txn(single(put_leased(&leased, "x", lease.id)))
        .await
        .or_fail("put with a lease")
        .revision;
    assert_eq!(r3, r2 + 1);

    let c = |key: &str, op: CompareOp, target: CompareTarget| Compare {
        key: key.to_owned(),
        op,
        target,
    };
    let table: Vec<(Compare, bool)> = vec![
        (c(&key, Equal, ModRevision(r2)), true),
        (c(&key, NotEqual, ModRevision(r2)), false),
        (c(&key, Greater, ModRevision(r2)), false),
        (c(&key, Less, ModRevision(r2)), false),
        (c(&key, Equal, ModRevision(r1)), false),
        (c(&key, NotEqual, ModRevision(r1)), true),
        (c(&key, Greater, ModRevision(r1)), true),
        (c(&key, Less, ModRevision(r2 + 1)), true),
        (c(&key, Greater, ModRevision(r2 + 1)), false),
        (c(&key, Equal, CreateRevision(r1)), true),
        (c(&key, NotEqual, CreateRevision(r1)), false),
        (c(&key, Less, CreateRevision(r2)), true),
        (c(&key, Greater, CreateRevision(r2)), false),
        (c(&key, Greater, CreateRevision(r1 - 1)), true),
        (c(&key, Equal, Version(2)), true),
        (c(&key, NotEqual, Version(2)), false),
        (c(&key, Greater, Version(1)), true),
        (c(&key, Less, Version(1)), false),
        (c(&key, Less, Version(3)), true),
        (c(&key, NotEqual, Version(3)), true),
        (c(&key, Equal, Value(b("m2"))), true),
        (c(&key, NotEqual, Value(b("m2"))), false),
        (c(&key, Equal, Value(b("m1"))), false),
        (c(&key, Greater, Value(b("m1"))), true),
        (c(&key, Less, Value(b("m1"))), false),
        (c(&key, Less, Value(b("m3"))), true),
        (c(&key, Greater, Value(b("m3"))), false),
        (c(&key, Less, Value(b("m2x"))), true),
        (c(&key, Greater, Value(b(""))), true),
        (c(&leased, Equal, Lease(lease.id)), true),
        (c(&leased, NotEqual, Lease(lease.id)), false),
        (c(&leased, Greater, Lease(0)), true),
        (c(&leased, Less, Lease(0)), false),
        (c(&key, Equal, Lease(0)), true),
        (c(&key, Equal, Lease(lease.id)), false),
        (c(&key, Less, Lease(lease.id)), true),
        (c(&missing, Equal, ModRevision(0)), true),
        (c(&missing, Greater, ModRevision(0)), false),
        (c(&missing, Less, ModRevision(1)), true),
        (c(&missing, Equal, CreateRevision(0)), true),
        (c(&missing, Equal, Version(0)), true),
        (c(&missing, Less, Version(1)), true),
        (c(&missing, Equal, Lease(0)), true),
        // A missing key's value compares with nothing: no operator holds (as in etcd).
        (c(&missing, Equal, Value(b(""))), false),
        (c(&missing, NotEqual, Value(b("x"))), false),
        (c(&missing, Less, Value(b("x"))), false),
        (c(&missing, Greater, Value(b(""))), false),
        (Compare::absent(&missing), true),
        (Compare::present(&missing), false),
        (Compare::absent(&key), false),
        (Compare::present(&key), true),
        (Compare::mod_revision(&key, r2), true),
        (Compare::mod_revision(&missing, 0), true),
    ];
    for (compare, expected) in table {
        let response = store
            .txn(Txn::when([compare.clone()]))
            .await
            .or_fail("txn with a compare");
        assert_eq!(response.succeeded, expected, "{compare:?}");
        assert_eq!(response.revision, r3, "a transaction without writes");
        assert!(response.responses.is_empty());
    }

    let holds = Compare::mod_revision(&key, r2);
    let fails = Compare::absent(&key);
    for (compares, expected) in [
        (vec![], true),
        (vec![holds.clone(), Compare::present(&leased)], true),
        (vec![holds.clone(), fails.clone()], false),
        (vec![fails.clone(), holds.clone()], false),
    ] {
        let response = store.txn(Txn::when(compares.clone())).await.or_fail("txn");
        assert_eq!(response.succeeded, expected, "all of {compares:?}");
    }

    let swap = Txn::when([Compare::mod_revision(&key, r2)])
        .and_then([Op::put(&key, "s"), Op::Range(RangeRequest::key(&key))])
        .or_else([Op::put(&key, "f")]);
    let first = store.txn(swap.clone()).await.or_fail("swap");
    let r4 = r3 + 1;
    let s = kv(&key, "s", r1, r4, 3);
    assert_eq!(
        first,
        TxnResponse {
            succeeded: true,
            revision: r4,
            responses: vec![
                OpResponse::Put {
                    prev_kv: Some(kv(&key, "m2", r1, r2, 2))
                },
                OpResponse::Range(RangeResponse {
                    kvs: vec![s.clone()],
                    more: false,
                    count: 1,
                    revision: r4
                }),
            ],
        },
        "the success branch"
    );
    let second = store.txn(swap).await.or_fail("stale swap");
    assert_eq!(
        second,
        TxnResponse {
            succeeded: false,
            revision: r4 + 1,
            responses: vec![OpResponse::Put { prev_kv: Some(s) }],
        },
        "the failure branch"
    );
    assert_eq!(
        store.get(&key).await.or_fail("get"),
        Some(kv(&key, "f", r1, r4 + 1, 4))
    );
    store.lease_revoke(lease.id).await.or_fail("lease_revoke");
}

/// Transactions apply all their operations at one revision or none of them.
pub async fn txn_atomicity<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("txn_atomicity");
    let k = |name: &str| format!("{p}{name}");
    let r1 = store.put(&k("a"), b("a0")).await.or_fail("put");
    let r2 = store.put(&k("d"), b("d0")).await.or_fail("put");

    let many = store
        .txn(Txn::default().and_then([
            Op::put(k("a"), "a1"),
            Op::put(k("b"), "b1"),
            Op::put(k("c"), "c1"),
            Op::delete(k("d")),
        ]))
        .await
        .or_fail("a multi-key transaction");
    let rt = r2 + 1;
    assert_eq!(
        many,
        TxnResponse {
            succeeded: true,
            revision: rt,
            responses: vec![
                OpResponse::Put {
                    prev_kv: Some(kv(&k("a"), "a0", r1, r1, 1))
                },
                OpResponse::Put { prev_kv: None },
                OpResponse::Put { prev_kv: None },
                OpResponse::Delete {
                    deleted: vec![kv(&k("d"), "d0", r2, r2, 1)]
                },
            ],
        },
        "four writes, one revision"
    );
    assert_eq!(current(&store).await, rt);
    let a1 = kv(&k("a"), "a1", r1, rt, 2);
    let b1 = kv(&k("b"), "b1", rt, rt, 1);
    let c1 = kv(&k("c"), "c1", rt, rt, 1);
    assert_eq!(
        read(&store, RangeRequest::prefix(&p)).await.kvs,
        vec![a1.clone(), b1.clone(), c1.clone()]
    );

    // Range operations see the state as of their place in the transaction.
    let ranges = store
        .txn(Txn::default().and_then([
            Op::Range(RangeRequest::key(k("a"))),
            Op::put(k("a"), "a2"),
            Op::Range(RangeRequest::key(k("a"))),
            Op::Range(RangeRequest::prefix(&p)),
            Op::Range(RangeRequest::prefix(&p).at(rt - 1)),
            Op::put(k("e"), "e1"),
        ]))
        .await
        .or_fail("ranges inside a transaction");
    let rr = rt + 1;
    let a2 = kv(&k("a"), "a2", r1, rr, 3);
    let range = |kvs: Vec<KeyValue>, revision| {
        OpResponse::Range(RangeResponse {
            count: kvs.len(),
            kvs,
            more: false,
            revision,
        })
    };
    assert_eq!(
        ranges,
        TxnResponse {
            succeeded: true,
            revision: rr,
            responses: vec![
                range(vec![a1.clone()], rt),
                OpResponse::Put {
                    prev_kv: Some(a1.clone())
                },
                range(vec![a2.clone()], rr),
                range(vec![a2.clone(), b1.clone(), c1.clone()], rr),
                range(
                    vec![kv(&k("a"), "a0", r1, r1, 1), kv(&k("d"), "d0", r2, r2, 1)],
                    rt - 1
                ),
                OpResponse::Put { prev_kv: None },
            ],
        },
        "a range sees the writes before it in its transaction"
    );

    let read_only = store
        .txn(Txn::default().and_then([Op::Range(RangeRequest::prefix(&p))]))
        .await
        .or_fail("a read-only transaction");
    assert_eq!(read_only.revision, rr, "a read-only transaction");
    let nothing = store
        .txn(Txn::default().and_then([
            Op::delete(k("none")),
            Op::Delete(KeyRange::Prefix(k("none/"))),
        ]))
        .await
        .or_fail("deletes of nothing");
    assert_eq!(
        nothing,
        TxnResponse {
            succeeded: true,
            revision: rr,
            responses: vec![
                OpResponse::Delete { deleted: vec![] },
                OpResponse::Delete { deleted: vec![] }
            ],
        },
        "deletes of nothing take no revision"
    );

    let failed = store
        .txn(
            Txn::when([Compare::absent(k("a"))])
                .and_then([Op::put(k("x"), "x")])
                .or_else([Op::put(k("f"), "f1")]),
        )
        .await
        .or_fail("failure branch");
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, rr + 1, "the failure branch writes too");
    assert_eq!(store.get(&k("x")).await.or_fail("get"), None);
    let rf = rr + 1;

    // Requests refused whole: nothing of them is applied.
    let state = read(&store, RangeRequest::prefix(&p)).await.kvs;
    let revoked = store
        .lease_grant(Duration::from_secs(60))
        .await
        .or_fail("lease_grant");
    store.lease_revoke(revoked.id).await.or_fail("lease_revoke");
    let refused: Vec<(&str, Txn)> = vec![
        (
            "the same key put twice",
            Txn::default().and_then([Op::put(k("a"), "1"), Op::put(k("a"), "2")]),
        ),
        (
            "a key put and deleted",
            Txn::default().and_then([Op::put(k("a"), "1"), Op::delete(k("a"))]),
        ),
        (
            "a put into a deleted prefix",
            Txn::default().and_then([
                Op::Delete(KeyRange::Prefix(p.clone())),
                Op::put(k("z"), "1"),
            ]),
        ),
        (
            "a key written twice in the branch that does not run",
            Txn::when([Compare::present(k("a"))])
                .and_then([Op::put(k("z"), "1")])
                .or_else([Op::put(k("y"), "1"), Op::put(k("y"), "2")]),
        ),
        (
            "a key written twice in the failure branch that runs",
            Txn::when([Compare::absent(k("a"))])
                .and_then([Op::put(k("z"), "1")])
                .or_else([Op::put(k("y"), "1"), Op::put(k("y"), "2")]),
        ),
        ("an empty key", Txn::default().and_then([Op::put("", "1")])),
        (
            "an empty key in a compare",
            Txn::when([Compare::absent("")]).and_then([Op::put(k("z"), "1")]),
        ),
        (
            "a read of an empty key",
            Txn::default().and_then([Op::put(k("z"), "1"), Op::Range(RangeRequest::key(""))]),
        ),
    ];
    for (what, txn) in refused {
        let result = store.txn(txn).await;
        assert!(is_invalid(&result), "{what}: {result:?}");
    }
    let unknown_lease = store
        .txn(Txn::default().and_then([Op::put(k("a"), "zz"), put_leased(&k("g"), "g", revoked.id)]))
        .await;
    assert_eq!(
        unknown_lease,
        Err(StoreError::LeaseNotFound(revoked.id)),
        "a put with a revoked lease"
    );
    let future = store
        .txn(Txn::default().and_then([
            Op::put(k("a"), "zz"),
            Op::Range(RangeRequest::prefix(&p).at(rf + 1)),
        ]))
        .await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { revision, .. }) if revision == rf + 1),
        "a read at a future revision inside a transaction: {future:?}"
    );
    assert_eq!(
        current(&store).await,
        rf,
        "refused transactions take no revision"
    );
    assert_eq!(
        read(&store, RangeRequest::prefix(&p)).await.kvs,
        state,
        "refused transactions change nothing"
    );
}

/// Sixteen clients increment one counter with compare-and-swap on its mod revision, retrying
/// when the compare fails: no increment is lost, every failed compare was stale, and the
/// increments line up with their revisions.
pub async fn concurrent_compare_and_swap<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    const CLIENTS: usize = 16;
    const INCREMENTS: usize = 20;
    let store = Arc::new(make().await);
    let key = format!("{}counter", unique_prefix("concurrent_compare_and_swap"));
    let created = store.put(&key, b("0")).await.or_fail("create the counter");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = key.clone();
            tokio::spawn(async move {
                let mut increments = Vec::new();
                let mut conflicts = 0_usize;
                while increments.len() < INCREMENTS {
                    let seen = store
                        .get(&key)
                        .await
                        .or_fail("read the counter")
                        .expect("the counter exists");
                    let value: u64 = std::str::from_utf8(&seen.value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .expect("a number");
                    // Let the other clients in between the read and the write.
                    tokio::task::yield_now().await;
                    let swap = Txn::when([Compare::mod_revision(&key, seen.mod_revision)])
                        .and_then([Op::put(&key, (value + 1).to_string())])
                        .or_else([Op::Range(RangeRequest::key(&key))]);
                    let response = store.txn(swap).await.or_fail("compare-and-swap");
                    if response.succeeded {
                        assert_eq!(
                            response.responses,
                            vec![OpResponse::Put {
                                prev_kv: Some(seen.clone())
                            }],
                            "a successful swap replaced what it read"
                        );
                        increments.push((response.revision, value + 1));
                    } else {
                        let Some(OpResponse::Range(now)) = response.responses.first() else {
                            panic!("the failure branch's read: {response:?}");
                        };
                        let now = now.kvs.first().expect("the counter exists");
                        assert!(
                            now.mod_revision > seen.mod_revision,
                            "a failed compare was not stale: read at {}, now at {}",
                            seen.mod_revision,
                            now.mod_revision
                        );
                        conflicts += 1;
                    }
                }
                (increments, conflicts)
            })
        })
        .collect();
    let mut increments = Vec::new();
    for client in clients {
        let (mine, _conflicts) = client.await.expect("a client panicked");
        increments.extend(mine);
    }
    increments.sort_unstable();
    let total = CLIENTS * INCREMENTS;
    assert_eq!(increments.len(), total);
    for (index, &(revision, value)) in increments.iter().enumerate() {
        assert_eq!(
            value,
            index as u64 + 1,
            "the increment at revision {revision} is the {}th",
            index + 1
        );
    }
    let last = increments.last().map_or(created, |&(revision, _)| revision);
    assert_eq!(
        last,
        created + total as i64,
        "one revision per successful swap, none for failed ones"
    );
    assert_eq!(
        store.get(&key).await.or_fail("read the counter"),
        Some(kv(
            &key,
            &total.to_string(),
            created,
            last,
            total as i64 + 1
        )),
        "no lost update"
    );
}

/// Watches of a prefix, a key range and one key, with and without previous values, over puts,
/// multi-key transactions and deletes: every event once, in order, a revision's events together.
pub async fn watch_events<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("watch_events");
    let k = |name: &str| format!("{p}{name}");
    let open = |range: KeyRange, prev: bool| {
        let request = WatchRequest::new(range);
        store.watch(if prev {
            request.with_prev_kv()
        } else {
            request
        })
    };
    let mut all = open(KeyRange::Prefix(p.clone()), true)
        .await
        .or_fail("watch");
    let mut plain = open(KeyRange::Prefix(p.clone()), false)
        .await
        .or_fail("watch");
    let mut sub = open(KeyRange::Prefix(k("b/")), true).await.or_fail("watch");
    let span = KeyRange::Range {
        start: k("a"),
        end: k("b"),
    };
    let mut span = open(span, true).await.or_fail("watch");
    let mut one = open(KeyRange::Key(k("c")), true).await.or_fail("watch");

    let r1 = store.put(&k("a"), b("1")).await.or_fail("put");
    let r2 = store
        .txn(Txn::default().and_then([
            Op::put(k("b/1"), "1"),
            Op::put(k("b/2"), "1"),
            Op::put(k("c"), "1"),
        ]))
        .await
        .or_fail("txn")
        .revision;
    let r3 = store.put(&k("a"), b("2")).await.or_fail("put");
    let r4 = store.delete(&k("b/1")).await.or_fail("delete");
    let r5 = store
        .txn(Txn::default().and_then([Op::Delete(KeyRange::Prefix(k("b/"))), Op::put(k("c"), "2")]))
        .await
        .or_fail("txn")
        .revision;
    assert_eq!((r2, r3, r4, r5), (r1 + 1, r1 + 2, r1 + 3, r1 + 4));

    let a1 = kv(&k("a"), "1", r1, r1, 1);
    let b1 = kv(&k("b/1"), "1", r2, r2, 1);
    let b2 = kv(&k("b/2"), "1", r2, r2, 1);
    let c1 = kv(&k("c"), "1", r2, r2, 1);
    let a2 = kv(&k("a"), "2", r1, r3, 2);
    let c2 = kv(&k("c"), "2", r2, r5, 2);
    let expected = vec![
        put_event(&a1, None),
        put_event(&b1, None),
        put_event(&b2, None),
        put_event(&c1, None),
        put_event(&a2, Some(&a1)),
        delete_event(&b1, r4),
        delete_event(&b2, r5),
        put_event(&c2, Some(&c1)),
    ];
    assert_eq!(
        collect_events(&mut all, r5, "watch of the prefix").await,
        expected
    );
    assert_eq!(
        collect_events(&mut plain, r5, "watch without prev_kv").await,
        without_prev(&expected)
    );
    assert_eq!(
        collect_events(&mut sub, r5, "watch of a sub-prefix").await,
        vec![
            put_event(&b1, None),
            put_event(&b2, None),
            delete_event(&b1, r4),
            delete_event(&b2, r5)
        ]
    );
    assert_eq!(
        collect_events(&mut span, r3, "watch of a key range").await,
        vec![put_event(&a1, None), put_event(&a2, Some(&a1))]
    );
    assert_eq!(
        collect_events(&mut one, r5, "watch of one key").await,
        vec![put_event(&c1, None), put_event(&c2, Some(&c1))]
    );
}

/// A watch from any retained revision (before, at and after each write of a history) delivers
/// exactly the events from that revision on.
pub async fn watch_resume<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("watch_resume");
    let k = |name: &str| format!("{p}{name}");
    let r0 = current(&store).await;
    let history: Vec<Vec<Op>> = vec![
        vec![Op::put(k("a"), "1")],
        vec![Op::put(k("b"), "1")],
        vec![Op::put(k("a"), "2"), Op::put(k("c"), "1")],
        vec![Op::delete(k("b"))],
        vec![Op::put(k("b"), "2")],
        vec![
            Op::delete(k("a")),
            Op::put(k("d"), "1"),
            Op::put(k("e"), "1"),
        ],
        vec![Op::put(k("c"), "2")],
        vec![Op::Delete(KeyRange::Prefix(p.clone()))],
        vec![Op::put(k("a"), "3")],
    ];
    let mut event_count = 0;
    for ops in &history {
        let response = store
            .txn(Txn::default().and_then(ops.clone()))
            .await
            .or_fail("write");
        event_count += response
            .responses
            .iter()
            .map(|op| match op {
                OpResponse::Delete { deleted } => deleted.len(),
                _ => 1,
            })
            .sum::<usize>();
    }
    let last = r0 + history.len() as i64;
    assert_eq!(current(&store).await, last);

    let watch_from = |revision: Revision| {
        store.watch(
            WatchRequest::new(KeyRange::Prefix(p.clone()))
                .from(revision)
                .with_prev_kv(),
        )
    };
    let mut stream = watch_from(r0 + 1)
        .await
        .or_fail("watch from the first write");
    let full = collect_events(&mut stream, last, "the whole history").await;
    assert_eq!(full.len(), event_count, "every event of the history");
    let revisions: BTreeSet<Revision> = full.iter().map(|event| event.kv.mod_revision).collect();
    assert_eq!(
        revisions,
        (r0 + 1..=last).collect(),
        "every revision of the history"
    );
    for from in r0..=last {
        let mut stream = watch_from(from).await.or_fail("watch from a revision");
        let got = collect_events(&mut stream, last, &format!("a watch from {from}")).await;
        let suffix: Vec<Event> = full
            .iter()
            .filter(|event| event.kv.mod_revision >= from)
            .cloned()
            .collect();
        assert_eq!(got, suffix, "a watch from revision {from}");
    }
    let mut next = watch_from(last + 1)
        .await
        .or_fail("watch from the next write");
    let newest = store.put(&k("z"), b("1")).await.or_fail("put");
    assert_eq!(
        collect_events(&mut next, newest, "a watch from the next write").await,
        vec![put_event(&kv(&k("z"), "1", newest, newest, 1), None)]
    );
}

/// Fifty watchers of one prefix, opened before a writer that runs concurrently with them (puts
/// and deletes, one to three keys per transaction), all see the same events: every revision the
/// writer made, in order, whole, once.
pub async fn watch_many_watchers<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    const WATCHERS: usize = 50;
    const WRITES: usize = 60;
    let store = Arc::new(make().await);
    let p = unique_prefix("watch_many_watchers");
    let end = format!("{p}~end");
    let mut watchers = Vec::new();
    for index in 0..WATCHERS {
        let request = WatchRequest::new(KeyRange::Prefix(p.clone()));
        let mut stream = store
            .watch(if index % 2 == 0 {
                request.with_prev_kv()
            } else {
                request
            })
            .await
            .or_fail("watch");
        let end = end.clone();
        watchers.push(tokio::spawn(async move {
            let what = format!("watcher {index}");
            let mut events: Vec<Event> = Vec::new();
            let mut last = 0;
            while events.last().is_none_or(|event| event.kv.key != end) {
                let response = next_response(&mut stream, &what).await;
                check_response(&response, last, &what);
                if !response.progress {
                    last = response.revision;
                    events.extend(response.events);
                }
            }
            events
        }));
    }

    let writer = {
        let store = Arc::clone(&store);
        let p = p.clone();
        let end = end.clone();
        tokio::spawn(async move {
            let keys: Vec<String> = (0..8).map(|index| format!("{p}k{index}")).collect();
            let mut live = BTreeSet::new();
            let mut expected = Vec::new();
            for write in 0..WRITES {
                let mut ops = Vec::new();
                let mut planned = Vec::new();
                let mut used = BTreeSet::new();
                for part in 0..=(write % 3) {
                    let index = (write * 5 + part * 3) % keys.len();
                    if !used.insert(index) {
                        continue;
                    }
                    let key = &keys[index];
                    if live.contains(&index) && (write + part) % 3 == 0 {
                        live.remove(&index);
                        ops.push(Op::delete(key));
                        planned.push((EventKind::Delete, key.clone(), Bytes::new()));
                    } else {
                        live.insert(index);
                        let value = b(format!("{write}"));
                        ops.push(Op::put(key, value.clone()));
                        planned.push((EventKind::Put, key.clone(), value));
                    }
                }
                let response = store
                    .txn(Txn::default().and_then(ops))
                    .await
                    .or_fail("write");
                expected.extend(
                    planned
                        .into_iter()
                        .map(|(kind, key, value)| (kind, key, value, response.revision)),
                );
                tokio::task::yield_now().await;
            }
            let revision = store.put(&end, b("end")).await.or_fail("the last write");
            expected.push((EventKind::Put, end, b("end"), revision));
            expected
        })
    };
    let expected = writer.await.expect("the writer panicked");
    let mut first: Option<Vec<Event>> = None;
    for (index, watcher) in watchers.into_iter().enumerate() {
        let events = watcher.await.expect("a watcher panicked");
        let summary: Vec<_> = events
            .iter()
            .map(|event| {
                (
                    event.kind,
                    event.kv.key.clone(),
                    event.kv.value.clone(),
                    event.kv.mod_revision,
                )
            })
            .collect();
        assert_eq!(summary, expected, "watcher {index} against the writer");
        let events = without_prev(&events);
        match &first {
            None => first = Some(events),
            Some(first) => assert_eq!(&events, first, "watcher {index} against watcher 0"),
        }
    }
}

/// Watches that cannot be served: from a compacted revision the stream yields
/// [`StoreError::Compacted`] and ends; from the compaction revision itself it works; from the
/// future the call fails; a slow watcher overtaken by a compaction either gets every event (a
/// backend that buffers) or a gap-free prefix of them and then `Compacted`, and ends.
pub async fn watch_compacted<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("watch_compacted");
    let k = |index: i64| format!("{p}k{index}");
    let r0 = current(&store).await;
    for index in 1..=5 {
        store.put(&k(index), b("1")).await.or_fail("put");
    }
    let (r2, r4, r5) = (r0 + 2, r0 + 4, r0 + 5);
    store.compact(r4).await.or_fail("compact");
    let prefix = || WatchRequest::new(KeyRange::Prefix(p.clone()));

    let mut stream = store
        .watch(prefix().from(r2))
        .await
        .or_fail("a watch from a compacted revision is opened, then fails");
    match timeout(WAIT, stream.next()).await {
        Ok(Some(Err(StoreError::Compacted {
            revision,
            compact_revision,
        }))) => {
            assert_eq!(revision, r2, "the revision that was asked for");
            assert_eq!(compact_revision, r4, "the compaction revision");
        }
        other => panic!("a watch from compacted revision {r2}: {other:?}"),
    }
    assert!(
        matches!(timeout(WAIT, stream.next()).await, Ok(None)),
        "the stream ends after Compacted"
    );

    let mut stream = store
        .watch(prefix().from(r4))
        .await
        .or_fail("watch from the compaction revision");
    let events = collect_events(&mut stream, r5, "a watch from the compaction revision").await;
    let keys: Vec<_> = events.iter().map(|event| event.kv.key.clone()).collect();
    assert_eq!(keys, vec![k(4), k(5)]);

    match store.watch(prefix().from(r5 + 2)).await {
        Err(StoreError::FutureRevision { revision, .. }) => assert_eq!(revision, r5 + 2),
        Err(error) => panic!("a watch from a future revision: {error:?}"),
        Ok(_) => panic!("a watch from a future revision was opened"),
    }

    // A slow watcher: it reads one event, falls behind, and the history it needs is compacted.
    let mut slow = store.watch(prefix()).await.or_fail("watch");
    let r6 = store.put(&k(6), b("1")).await.or_fail("put");
    let first = next_response(&mut slow, "the slow watcher").await;
    assert_eq!(first.revision, r6);
    for index in 7..=10 {
        store.put(&k(index), b("1")).await.or_fail("put");
    }
    let r10 = r6 + 4;
    store.compact(r10).await.or_fail("compact");
    let mut next = r6 + 1;
    while next <= r10 {
        match timeout(WAIT, slow.next()).await {
            Ok(Some(Ok(response))) if response.progress => {}
            Ok(Some(Ok(response))) => {
                for event in &response.events {
                    assert_eq!(
                        event.kv.mod_revision, next,
                        "the slow watcher's events stay gap-free"
                    );
                    next += 1;
                }
            }
            Ok(Some(Err(StoreError::Compacted {
                revision,
                compact_revision,
            }))) => {
                assert_eq!(
                    revision, next,
                    "Compacted names the first revision not delivered"
                );
                assert_eq!(compact_revision, r10);
                assert!(
                    matches!(timeout(WAIT, slow.next()).await, Ok(None)),
                    "the stream ends after Compacted"
                );
                break;
            }
            other => panic!("the slow watcher: {other:?}"),
        }
    }
}

/// Progress notifications: an idle watch that asked for them gets them, at a revision at or
/// after its last event's and after writes elsewhere; a watch that did not ask gets none.
pub async fn watch_progress<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    const EVERY: Duration = Duration::from_secs(1);
    let store = make().await;
    let p = unique_prefix("watch_progress");
    let watched = KeyRange::Prefix(format!("{p}w/"));
    let mut stream = store
        .watch(WatchRequest::new(watched.clone()).progress(EVERY))
        .await
        .or_fail("watch with progress notifications");
    let mut quiet = store
        .watch(WatchRequest::new(watched.clone()))
        .await
        .or_fail("watch without progress notifications");
    let mut idle = store
        .watch(WatchRequest::new(KeyRange::Prefix(format!("{p}none/"))).progress(EVERY))
        .await
        .or_fail("watch with progress notifications");
    let start = current(&store).await;

    let r1 = store.put(&format!("{p}w/a"), b("1")).await.or_fail("put");
    let events = collect_events(&mut stream, r1, "the event before the notifications").await;
    assert_eq!(events.len(), 1);
    let progress = next_response(&mut stream, "an idle watch").await;
    check_response(&progress, r1, "an idle watch");
    assert!(progress.progress, "an idle watch notifies: {progress:?}");

    let r2 = store
        .put(&format!("{p}x"), b("1"))
        .await
        .or_fail("put elsewhere");
    loop {
        let progress = next_response(&mut stream, "an idle watch").await;
        check_response(&progress, r1, "an idle watch");
        assert!(progress.progress, "only notifications: {progress:?}");
        if progress.revision >= r2 {
            break;
        }
    }

    let notice = next_response(&mut idle, "a watch with no events").await;
    assert!(
        notice.progress,
        "a watch with no events notifies: {notice:?}"
    );
    assert!(notice.revision >= start);

    assert_eq!(
        collect_events(&mut quiet, r1, "a watch without notifications")
            .await
            .len(),
        1
    );
    assert!(
        timeout(EVERY * 2, quiet.next()).await.is_err(),
        "a watch that did not ask for progress notifications gets none"
    );
}

/// Leases: grant, keep-alive, time to live, revoke. Revoking deletes every key still attached,
/// at one revision that watchers see whole; a put without the lease detaches a key; a revoked
/// lease is gone for every call.
pub async fn lease_grant_revoke<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    const LONG: Duration = Duration::from_secs(60);
    let store = make().await;
    let p = unique_prefix("lease_grant_revoke");
    let k = |name: &str| format!("{p}{name}");
    assert!(
        is_invalid(&store.lease_grant(Duration::ZERO).await),
        "a lease with no time to live"
    );
    let lease = store.lease_grant(LONG).await.or_fail("lease_grant");
    let other = store.lease_grant(LONG).await.or_fail("lease_grant");
    assert!(lease.id > 0 && other.id > 0, "lease ids are positive");
    assert_ne!(lease.id, other.id, "lease ids are unique");
    assert!(
        lease.ttl >= LONG,
        "the granted time to live: {:?}",
        lease.ttl
    );
    let left = store
        .lease_time_to_live(lease.id)
        .await
        .or_fail("lease_time_to_live");
    assert!(
        left > Duration::ZERO && left <= lease.ttl,
        "time to live {left:?}"
    );
    assert_eq!(
        store
            .lease_keep_alive(lease.id)
            .await
            .or_fail("lease_keep_alive"),
        lease.ttl
    );

    store
        .txn(Txn::default().and_then([
            put_leased(&k("a"), "1", lease.id),
            put_leased(&k("b"), "1", lease.id),
            put_leased(&k("c"), "1", lease.id),
        ]))
        .await
        .or_fail("puts with a lease");
    store.put(&k("d"), b("1")).await.or_fail("put");
    store
        .txn(single(put_leased(&k("e"), "1", lease.id)))
        .await
        .or_fail("put with a lease");
    store
        .put(&k("e"), b("2"))
        .await
        .or_fail("put without the lease");
    store
        .txn(single(put_leased(&k("f"), "1", other.id)))
        .await
        .or_fail("put with a lease");
    store
        .txn(single(put_leased(&k("f"), "2", lease.id)))
        .await
        .or_fail("move to another lease");
    let leases = |response: RangeResponse| -> Vec<(String, Option<LeaseId>)> {
        response
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.lease))
            .collect()
    };
    let attached = Some(lease.id);
    assert_eq!(
        leases(read(&store, RangeRequest::prefix(&p)).await),
        vec![
            (k("a"), attached),
            (k("b"), attached),
            (k("c"), attached),
            (k("d"), None),
            (k("e"), None),
            (k("f"), attached)
        ]
    );

    let mut stream = store
        .watch(WatchRequest::new(KeyRange::Prefix(p.clone())).with_prev_kv())
        .await
        .or_fail("watch");
    let before = current(&store).await;
    store.lease_revoke(lease.id).await.or_fail("lease_revoke");
    let revoked = before + 1;
    assert_eq!(
        current(&store).await,
        revoked,
        "a revoke takes one revision"
    );
    assert_eq!(
        leases(read(&store, RangeRequest::prefix(&p)).await),
        vec![(k("d"), None), (k("e"), None)],
        "the keys attached are gone, the others stay"
    );
    let response = next_response(&mut stream, "a watch of the revoked keys").await;
    check_response(&response, 0, "a watch of the revoked keys");
    let mut deleted: Vec<(bool, String, Revision)> = response
        .events
        .iter()
        .map(|event| {
            let delete = event.kind == EventKind::Delete;
            (delete, event.kv.key.clone(), event.kv.mod_revision)
        })
        .collect();
    deleted.sort();
    let expected: Vec<_> = ["a", "b", "c", "f"]
        .into_iter()
        .map(|name| (true, k(name), revoked))
        .collect();
    assert_eq!(deleted, expected, "the revoke's deletes, in one response");
    assert_eq!(response.events.len(), 4);

    let gone: Result<()> = Err(StoreError::LeaseNotFound(lease.id));
    assert_eq!(
        store.lease_keep_alive(lease.id).await,
        gone.clone().map(|()| LONG)
    );
    assert_eq!(
        store.lease_time_to_live(lease.id).await,
        gone.clone().map(|()| LONG)
    );
    assert_eq!(store.lease_revoke(lease.id).await, gone.clone());
    assert_eq!(
        store
            .txn(single(put_leased(&k("g"), "1", lease.id)))
            .await
            .map(|_| ()),
        gone,
        "a put with a revoked lease"
    );
    store
        .lease_revoke(other.id)
        .await
        .or_fail("revoke a lease with no key");
    assert_eq!(
        current(&store).await,
        revoked,
        "revoking a lease with no key takes no revision"
    );
}

/// Leases expire: keep-alives before the deadline prevent it; at expiry the attached keys are
/// deleted at one revision, which watchers see whole; the lease is gone; and expiry happens
/// whether or not anyone watches.
pub async fn lease_expiry<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("lease_expiry");
    let k = |name: &str| format!("{p}{name}");
    let lease = store.lease_grant(TTL).await.or_fail("lease_grant");
    store
        .txn(Txn::default().and_then([
            put_leased(&k("a"), "1", lease.id),
            put_leased(&k("b"), "1", lease.id),
        ]))
        .await
        .or_fail("puts with a lease");
    store.put(&k("c"), b("1")).await.or_fail("put");
    let mut stream = store
        .watch(WatchRequest::new(KeyRange::Prefix(p.clone())))
        .await
        .or_fail("watch");

    // Kept alive past its first deadline, the lease and its keys stay.
    sleep(TTL / 2).await;
    store
        .lease_keep_alive(lease.id)
        .await
        .or_fail("lease_keep_alive");
    sleep(TTL * 3 / 4).await;
    assert!(
        store.get(&k("a")).await.or_fail("get").is_some(),
        "a key of a lease kept alive"
    );
    let left = store
        .lease_time_to_live(lease.id)
        .await
        .or_fail("lease_time_to_live");
    assert!(left <= lease.ttl, "time to live {left:?}");

    // Left alone, it expires; the watch sees both deletes at one revision.
    let response = next_response(&mut stream, "a watch of keys whose lease expires").await;
    check_response(&response, 0, "a watch of keys whose lease expires");
    let deleted: Vec<(EventKind, String)> = response
        .events
        .iter()
        .map(|event| (event.kind, event.kv.key.clone()))
        .collect();
    assert_eq!(
        deleted,
        vec![(EventKind::Delete, k("a")), (EventKind::Delete, k("b"))],
        "the expired lease's deletes, in one response"
    );
    assert_eq!(
        response.events[0].kv.mod_revision, response.events[1].kv.mod_revision,
        "one revision"
    );
    let keys: Vec<String> = read(&store, RangeRequest::prefix(&p))
        .await
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec![k("c")], "only the key without a lease stays");
    let gone = StoreError::LeaseNotFound(lease.id);
    assert_eq!(store.lease_keep_alive(lease.id).await, Err(gone.clone()));
    assert_eq!(store.lease_time_to_live(lease.id).await, Err(gone.clone()));
    assert_eq!(
        store
            .txn(single(put_leased(&k("d"), "1", lease.id)))
            .await
            .map(|_| ()),
        Err(gone),
        "a put with an expired lease"
    );
    drop(stream);

    // Expiry with no watcher open.
    let unwatched = store.lease_grant(TTL).await.or_fail("lease_grant");
    store
        .txn(single(put_leased(&k("e"), "1", unwatched.id)))
        .await
        .or_fail("put with a lease");
    sleep(TTL).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.get(&k("e")).await.or_fail("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a key of an expired lease outlived it by {WAIT:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.lease_keep_alive(unwatched.id).await,
        Err(StoreError::LeaseNotFound(unwatched.id))
    );
}

/// Compaction keeps the state and the history from its revision on, forgets what came before,
/// and refuses to go backwards, to repeat itself or to reach the future.
pub async fn compaction<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let store = make().await;
    let p = unique_prefix("compaction");
    let k = |name: &str| format!("{p}{name}");
    let r0 = current(&store).await;
    store.put(&k("a"), b("1")).await.or_fail("put");
    store.put(&k("b"), b("1")).await.or_fail("put");
    store.delete(&k("b")).await.or_fail("delete");
    store.put(&k("a"), b("2")).await.or_fail("put");
    store.put(&k("c"), b("1")).await.or_fail("put");
    store.put(&k("a"), b("3")).await.or_fail("put");
    let (r4, r6) = (r0 + 4, r0 + 6);
    assert_eq!(current(&store).await, r6);
    let mut snapshots = BTreeMap::new();
    for revision in r0 + 1..=r6 {
        snapshots.insert(
            revision,
            read(&store, RangeRequest::prefix(&p).at(revision)).await,
        );
    }

    store.compact(r4).await.or_fail("compact");
    assert_eq!(
        read(&store, RangeRequest::prefix(&p)).await,
        snapshots[&r6],
        "the state after compaction"
    );
    for revision in r4..=r6 {
        assert_eq!(
            read(&store, RangeRequest::prefix(&p).at(revision)).await,
            snapshots[&revision],
            "revision {revision} after compacting to {r4}"
        );
    }
    for revision in r0 + 1..r4 {
        match store.range(RangeRequest::prefix(&p).at(revision)).await {
            Err(StoreError::Compacted {
                revision: asked, ..
            }) => assert_eq!(asked, revision),
            other => panic!("a read at compacted revision {revision}: {other:?}"),
        }
    }
    let a = store.get(&k("a")).await.or_fail("get").expect("a exists");
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version),
        (r0 + 1, r6, 3),
        "compaction keeps create revisions and versions"
    );

    for revision in [r4, r4 - 1] {
        match store.compact(revision).await {
            Err(StoreError::Compacted {
                revision: asked, ..
            }) => assert_eq!(asked, revision),
            other => panic!("compacting to {revision} after compacting to {r4}: {other:?}"),
        }
    }
    match store.compact(r6 + 1).await {
        Err(StoreError::FutureRevision { revision, .. }) => assert_eq!(revision, r6 + 1),
        other => panic!("compacting to the future: {other:?}"),
    }

    let mut stream = store
        .watch(WatchRequest::new(KeyRange::Prefix(p.clone())).from(r4))
        .await
        .or_fail("watch from the compaction revision");
    let events = collect_events(&mut stream, r6, "a watch from the compaction revision").await;
    let summary: Vec<_> = events
        .iter()
        .map(|event| (event.kind, event.kv.key.clone(), event.kv.mod_revision))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, k("a"), r4),
            (EventKind::Put, k("c"), r0 + 5),
            (EventKind::Put, k("a"), r6)
        ]
    );

    store
        .compact(r6)
        .await
        .or_fail("compact to the current revision");
    assert_eq!(read(&store, RangeRequest::prefix(&p)).await, snapshots[&r6]);
    assert_eq!(store.put(&k("d"), b("1")).await, Ok(r6 + 1), "writes go on");
}

// ---------------------------------------------------------------------------------------------
// The model-based case.

const MODEL_KEYS: [&str; 6] = ["a", "a/1", "a/2", "b", "b/1", "c"];
const MODEL_PREFIXES: [&str; 5] = ["", "a", "a/", "b/", "d"];
const MODEL_BOUNDS: [&str; 5] = ["a", "a/2", "b", "b/1", "z"];

/// A key range of the model, by index into the tables above.
#[derive(Clone, Debug)]
enum ModelRange {
    Key(usize),
    Prefix(usize),
    Range(usize, usize),
}

#[derive(Clone, Debug)]
enum ModelTarget {
    /// A revision picked among the sequence's, or 0.
    ModRevision(Option<u8>),
    CreateRevision(Option<u8>),
    Version(i64),
    Value(u8),
    NoLease,
}

#[derive(Clone, Debug)]
struct ModelCompare {
    key: usize,
    op: CompareOp,
    target: ModelTarget,
}

#[derive(Clone, Debug)]
enum ModelTxnOp {
    Put(usize, u8),
    Delete(ModelRange),
    Range(ModelRange),
}

#[derive(Clone, Debug)]
enum ModelOp {
    Put(usize, u8),
    Delete(ModelRange),
    Txn {
        compares: Vec<ModelCompare>,
        success: Vec<ModelTxnOp>,
        failure: Vec<ModelTxnOp>,
    },
    Range {
        range: ModelRange,
        at: Option<u8>,
        limit: Option<usize>,
        count_only: bool,
    },
    Compact(u8),
}

fn model_range() -> impl Strategy<Value = ModelRange> {
    prop_oneof![
        3 => (0..MODEL_KEYS.len()).prop_map(ModelRange::Key),
        2 => (0..MODEL_PREFIXES.len()).prop_map(ModelRange::Prefix),
        1 => (0..MODEL_BOUNDS.len(), 0..MODEL_BOUNDS.len())
            .prop_map(|(start, end)| ModelRange::Range(start, end)),
    ]
}

fn model_txn_op() -> impl Strategy<Value = ModelTxnOp> {
    prop_oneof![
        3 => (0..MODEL_KEYS.len(), any::<u8>())
            .prop_map(|(key, value)| ModelTxnOp::Put(key, value)),
        1 => model_range().prop_map(ModelTxnOp::Delete),
        1 => model_range().prop_map(ModelTxnOp::Range),
    ]
}

fn model_compare() -> impl Strategy<Value = ModelCompare> {
    let op = prop_oneof![
        Just(CompareOp::Equal),
        Just(CompareOp::NotEqual),
        Just(CompareOp::Greater),
        Just(CompareOp::Less),
    ];
    let target = prop_oneof![
        proptest::option::of(any::<u8>()).prop_map(ModelTarget::ModRevision),
        proptest::option::of(any::<u8>()).prop_map(ModelTarget::CreateRevision),
        (0_i64..4).prop_map(ModelTarget::Version),
        any::<u8>().prop_map(ModelTarget::Value),
        Just(ModelTarget::NoLease),
    ];
    (0..MODEL_KEYS.len(), op, target).prop_map(|(key, op, target)| ModelCompare { key, op, target })
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0..MODEL_KEYS.len(), any::<u8>()).prop_map(|(key, value)| ModelOp::Put(key, value)),
        2 => model_range().prop_map(ModelOp::Delete),
        3 => (
            proptest::collection::vec(model_compare(), 0..3),
            proptest::collection::vec(model_txn_op(), 0..4),
            proptest::collection::vec(model_txn_op(), 0..3),
        )
            .prop_map(|(compares, success, failure)| ModelOp::Txn {
                compares,
                success,
                failure
            }),
        2 => (
            model_range(),
            proptest::option::of(any::<u8>()),
            proptest::option::of(0_usize..4),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(range, at, limit, count_only)| ModelOp::Range {
                range,
                at,
                limit,
                count_only
            }),
        1 => any::<u8>().prop_map(ModelOp::Compact),
    ]
}

fn model_value(value: u8) -> Bytes {
    b(format!("v{}", value % 8))
}

/// A failure the model expects.
#[derive(Debug)]
enum Refusal {
    Invalid,
    Compacted(Revision),
    Future(Revision),
}

fn refusal_matches(error: &StoreError, refusal: &Refusal) -> bool {
    match (error, refusal) {
        (StoreError::InvalidRequest(_), Refusal::Invalid) => true,
        (StoreError::Compacted { revision, .. }, Refusal::Compacted(expected))
        | (StoreError::FutureRevision { revision, .. }, Refusal::Future(expected)) => {
            revision == expected
        }
        _ => false,
    }
}

/// The reference: a map, a revision counter and a snapshot of the map at every revision.
struct Model {
    prefix: String,
    base: Revision,
    revision: Revision,
    compacted: Revision,
    keys: BTreeMap<String, KeyValue>,
    history: BTreeMap<Revision, BTreeMap<String, KeyValue>>,
}

impl Model {
    fn key(&self, index: usize) -> String {
        format!("{}{}", self.prefix, MODEL_KEYS[index % MODEL_KEYS.len()])
    }

    fn range(&self, range: &ModelRange) -> KeyRange {
        let at =
            |table: &[&str], index: usize| format!("{}{}", self.prefix, table[index % table.len()]);
        match *range {
            ModelRange::Key(index) => KeyRange::Key(self.key(index)),
            ModelRange::Prefix(index) => KeyRange::Prefix(at(&MODEL_PREFIXES, index)),
            ModelRange::Range(start, end) => KeyRange::Range {
                start: at(&MODEL_BOUNDS, start),
                end: at(&MODEL_BOUNDS, end),
            },
        }
    }

    /// A revision of the sequence, from its start to one past the current one.
    fn pick(&self, pick: u8) -> Revision {
        self.base + i64::from(pick) % (self.revision - self.base + 2)
    }

    fn read(
        keys: &BTreeMap<String, KeyValue>,
        range: &KeyRange,
        limit: Option<usize>,
        count_only: bool,
        revision: Revision,
    ) -> RangeResponse {
        let matched: Vec<&KeyValue> = keys
            .iter()
            .filter(|(key, _)| range.contains(key))
            .map(|(_, kv)| kv)
            .collect();
        let shown = if count_only {
            0
        } else {
            limit.unwrap_or(usize::MAX)
        };
        let kvs: Vec<KeyValue> = matched.iter().take(shown).map(|kv| (*kv).clone()).collect();
        RangeResponse {
            more: !count_only && matched.len() > kvs.len(),
            count: matched.len(),
            kvs,
            revision,
        }
    }

    fn holds(&self, compare: &ModelCompare) -> bool {
        let live = self.keys.get(&self.key(compare.key));
        let ordering = match &compare.target {
            ModelTarget::Value(value) => match live {
                None => return false,
                Some(kv) => kv.value.cmp(&model_value(*value)),
            },
            ModelTarget::ModRevision(pick) => live
                .map_or(0, |kv| kv.mod_revision)
                .cmp(&pick.map_or(0, |pick| self.pick(pick))),
            ModelTarget::CreateRevision(pick) => live
                .map_or(0, |kv| kv.create_revision)
                .cmp(&pick.map_or(0, |pick| self.pick(pick))),
            ModelTarget::Version(version) => live.map_or(0, |kv| kv.version).cmp(version),
            ModelTarget::NoLease => 0.cmp(&0),
        };
        match compare.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Greater => ordering.is_gt(),
            CompareOp::Less => ordering.is_lt(),
        }
    }

    fn compare(&self, compare: &ModelCompare) -> Compare {
        let target = match &compare.target {
            ModelTarget::ModRevision(pick) => {
                CompareTarget::ModRevision(pick.map_or(0, |pick| self.pick(pick)))
            }
            ModelTarget::CreateRevision(pick) => {
                CompareTarget::CreateRevision(pick.map_or(0, |pick| self.pick(pick)))
            }
            ModelTarget::Version(version) => CompareTarget::Version(*version),
            ModelTarget::Value(value) => CompareTarget::Value(model_value(*value)),
            ModelTarget::NoLease => CompareTarget::Lease(0),
        };
        Compare {
            key: self.key(compare.key),
            op: compare.op,
            target,
        }
    }

    fn op(&self, op: &ModelTxnOp) -> Op {
        match op {
            ModelTxnOp::Put(key, value) => Op::put(self.key(*key), model_value(*value)),
            ModelTxnOp::Delete(range) => Op::Delete(self.range(range)),
            ModelTxnOp::Range(range) => Op::Range(RangeRequest::new(self.range(range))),
        }
    }

    /// Whether a branch writes some key twice: two written ranges share a key exactly when both
    /// contain one of their two starts.
    fn writes_twice(ops: &[Op]) -> bool {
        let written: Vec<KeyRange> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, .. } => Some(KeyRange::Key(key.clone())),
                Op::Delete(range) => Some(range.clone()),
                Op::Range(_) => None,
            })
            .collect();
        written.iter().enumerate().any(|(index, a)| {
            written[index + 1..].iter().any(|b| {
                [a.start(), b.start()]
                    .iter()
                    .any(|key| a.contains(key) && b.contains(key))
            })
        })
    }

    /// Applies a transaction the way the contract says; `None` when it must be refused.
    fn txn(
        &mut self,
        compares: &[ModelCompare],
        success: &[Op],
        failure: &[Op],
    ) -> Option<TxnResponse> {
        if Self::writes_twice(success) || Self::writes_twice(failure) {
            return None;
        }
        let succeeded = compares.iter().all(|compare| self.holds(compare));
        let ops = if succeeded { success } else { failure };
        let next = self.revision + 1;
        let mut changed = false;
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                Op::Put { key, value, .. } => {
                    let prev = self.keys.get(key).cloned();
                    let (create_revision, version) = prev
                        .as_ref()
                        .map_or((next, 1), |prev| (prev.create_revision, prev.version + 1));
                    self.keys.insert(
                        key.clone(),
                        KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: next,
                            version,
                            lease: None,
                        },
                    );
                    changed = true;
                    OpResponse::Put { prev_kv: prev }
                }
                Op::Delete(range) => {
                    let doomed: Vec<String> = self
                        .keys
                        .keys()
                        .filter(|key| range.contains(key))
                        .cloned()
                        .collect();
                    let deleted: Vec<KeyValue> = doomed
                        .iter()
                        .filter_map(|key| self.keys.remove(key))
                        .collect();
                    changed |= !deleted.is_empty();
                    OpResponse::Delete { deleted }
                }
                Op::Range(request) => {
                    let seen = if changed { next } else { self.revision };
                    OpResponse::Range(Self::read(&self.keys, &request.range, None, false, seen))
                }
            });
        }
        if changed {
            self.revision = next;
            self.history.insert(next, self.keys.clone());
        }
        Some(TxnResponse {
            succeeded,
            revision: self.revision,
            responses,
        })
    }
}

/// Runs one sequence against a fresh store and the model; the first disagreement, if any.
async fn run_model<S, F, Fut>(make: &F, ops: &[ModelOp]) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    fn check<T: PartialEq + Debug>(got: &T, expected: &T, what: &str) -> Result<(), String> {
        if got == expected {
            Ok(())
        } else {
            Err(format!(
                "{what}:\n   store: {got:?}\n   model: {expected:?}"
            ))
        }
    }
    fn refused<T: Debug>(
        got: Result<T, StoreError>,
        refusal: &Refusal,
        what: &str,
    ) -> Result<(), String> {
        match got {
            Err(error) if refusal_matches(&error, refusal) => Ok(()),
            other => Err(format!(
                "{what}:\n   store: {other:?}\n   model: a refusal, {refusal:?}"
            )),
        }
    }

    let store = make().await;
    let base = store
        .current_revision()
        .await
        .map_err(|error| format!("current_revision: {error:?}"))?;
    let mut model = Model {
        prefix: unique_prefix("model_based"),
        base,
        revision: base,
        compacted: 0,
        keys: BTreeMap::new(),
        history: BTreeMap::from([(base, BTreeMap::new())]),
    };
    for (index, op) in ops.iter().enumerate() {
        let what = format!("operation {index}, {op:?}");
        match op {
            ModelOp::Put(..) | ModelOp::Delete(_) | ModelOp::Txn { .. } => {
                let (compares, success, failure) = match op {
                    ModelOp::Put(key, value) => (
                        vec![],
                        vec![model.op(&ModelTxnOp::Put(*key, *value))],
                        vec![],
                    ),
                    ModelOp::Delete(range) => (
                        vec![],
                        vec![model.op(&ModelTxnOp::Delete(range.clone()))],
                        vec![],
                    ),
                    ModelOp::Txn {
                        compares,
                        success,
                        failure,
                    } => (
                        compares.clone(),
                        success.iter().map(|op| model.op(op)).collect(),
                        failure.iter().map(|op| model.op(op)).collect(),
                    ),
                    _ => unreachable!("matched above"),
                };
                let txn = Txn {
                    compares: compares
                        .iter()
                        .map(|compare| model.compare(compare))
                        .collect(),
                    success: success.clone(),
                    failure: failure.clone(),
                };
                let got = store.txn(txn).await;
                match model.txn(&compares, &success, &failure) {
                    Some(expected) => check(&got, &Ok(expected), &what)?,
                    None => refused(got, &Refusal::Invalid, &what)?,
                }
            }
            ModelOp::Range {
                range,
                at,
                limit,
                count_only,
            } => {
                let mut request = RangeRequest::new(model.range(range));
                request.revision = at.map(|pick| model.pick(pick));
                request.limit = *limit;
                request.count_only = *count_only;
                let got = store.range(request.clone()).await;
                match request.revision {
                    None => {
                        let expected = Model::read(
                            &model.keys,
                            &request.range,
                            *limit,
                            *count_only,
                            model.revision,
                        );
                        check(&got, &Ok(expected), &what)?;
                    }
                    Some(revision) if revision > model.revision => {
                        refused(got, &Refusal::Future(revision), &what)?;
                    }
                    Some(revision) if revision < model.compacted => {
                        refused(got, &Refusal::Compacted(revision), &what)?;
                    }
                    Some(revision) => {
                        let keys = model
                            .history
                            .range(..=revision)
                            .next_back()
                            .map(|(_, keys)| keys.clone())
                            .unwrap_or_default();
                        let expected =
                            Model::read(&keys, &request.range, *limit, *count_only, revision);
                        check(&got, &Ok(expected), &what)?;
                    }
                }
            }
            ModelOp::Compact(pick) => {
                // Only revisions this sequence wrote (the store may have been compacted up to
                // where it started), or the future.
                let revision =
                    model.base + 1 + i64::from(*pick) % (model.revision - model.base + 1);
                let got = store.compact(revision).await;
                if revision > model.revision {
                    refused(got, &Refusal::Future(revision), &what)?;
                } else if revision <= model.compacted {
                    refused(got, &Refusal::Compacted(revision), &what)?;
                } else {
                    check(&got, &Ok(()), &what)?;
                    model.compacted = revision;
                }
            }
        }
        let revision = store.current_revision().await;
        check(
            &revision,
            &Ok(model.revision),
            &format!("the revision after {what}"),
        )?;
    }
    let all = store.range(RangeRequest::prefix(&model.prefix)).await;
    let expected = Model::read(
        &model.keys,
        &KeyRange::Prefix(model.prefix.clone()),
        None,
        false,
        model.revision,
    );
    check(&all, &Ok(expected), "the final state")
}

/// Random sequences of puts, deletes, transactions (random compares, overlapping writes), reads
/// (limits, counts, past, compacted and future revisions) and compactions, each answer checked
/// against a reference model: a map, a revision counter and a snapshot per revision.
///
/// 64 sequences of up to 40 operations (`PROPTEST_CASES` sets another count; the seed is random,
/// `PROPTEST_RNG_SEED` fixes it). A failing sequence is shrunk to a minimal one, which the panic
/// message shows with the seed. The sequences run on the caller's runtime (the proptest value
/// trees are driven by hand), so backends whose client needs that runtime work too.
pub async fn model_based<S, F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.failure_persistence = None;
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(model_op(), 1..=40);
    for _ in 0..cases {
        let mut tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|reason| panic!("model_based: cannot generate a sequence: {reason:?}"));
        let Err(failure) = run_model(&make, &tree.current()).await else {
            continue;
        };
        // Shrink as proptest does: simplify while the sequence fails, complicate when it passes.
        let mut smallest = (tree.current(), failure);
        let mut steps = 0;
        if tree.simplify() {
            while steps < 2_000 {
                steps += 1;
                let candidate = tree.current();
                match run_model(&make, &candidate).await {
                    Err(failure) => {
                        smallest = (candidate, failure);
                        if !tree.simplify() {
                            break;
                        }
                    }
                    Ok(()) => {
                        if !tree.complicate() {
                            break;
                        }
                    }
                }
            }
        }
        let (ops, failure) = smallest;
        let mut listing = String::new();
        for (index, op) in ops.iter().enumerate() {
            let _ = writeln!(listing, "  {index}: {op:?}");
        }
        panic!(
            "model_based: the store disagrees with the model (PROPTEST_RNG_SEED={seed} repeats \
             the run). Smallest failing sequence:\n{listing}{failure}"
        );
    }
}
