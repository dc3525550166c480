//! Watches at control-plane scale on the in-memory reference store: a thousand concurrent
//! watchers under a writer all see the same, gap-free events, and watches that need compacted
//! history are told so.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use orchestra_core::store::testing::collect_events;
use orchestra_core::store::{
    Event, EventKind, KeyRange, MemoryStore, Op, Revision, Store, StoreError, Txn, WatchRequest,
};

const PREFIX: &str = "/registry/pods/";

/// 1,000 watchers of one prefix, opened before a writer that runs alongside them: 200
/// transactions of three puts or deletes each over 60 pod keys, with writes to other keys in
/// between. Every watcher sees exactly the writer's events: every revision, in order, whole
/// (the three changes of a transaction in one response), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_see_identical_gap_free_events() {
    const WATCHERS: usize = 1_000;
    const WRITES: usize = 200;
    const KEYS: usize = 60;
    const OTHER_EVERY: usize = 10;

    let store = Arc::new(MemoryStore::new());
    let start = store.current_revision().await.unwrap();
    let last = start + (WRITES + WRITES / OTHER_EVERY) as Revision;

    let mut watchers = Vec::with_capacity(WATCHERS);
    for index in 0..WATCHERS {
        let request = WatchRequest::new(KeyRange::Prefix(PREFIX.into()));
        let request = if index % 2 == 0 {
            request.with_prev_kv()
        } else {
            request
        };
        let mut stream = store.watch(request).await.unwrap();
        watchers.push(tokio::spawn(async move {
            collect_events(&mut stream, last, &format!("watcher {index}")).await
        }));
    }

    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let key = |index: usize| format!("{PREFIX}ns-{}/pod-{index}", index % 4);
            let mut live = [false; KEYS];
            let mut expected = Vec::new();
            for write in 0..WRITES {
                if write % OTHER_EVERY == 0 {
                    store
                        .put("/registry/nodes/node-1", Bytes::from(write.to_string()))
                        .await
                        .unwrap();
                }
                let mut ops = Vec::new();
                let mut planned = Vec::new();
                for part in 0..3 {
                    let index = (write * 7 + part * 20) % KEYS;
                    let name = key(index);
                    if live[index] && (write + part) % 4 == 0 {
                        live[index] = false;
                        ops.push(Op::delete(&name));
                        planned.push((EventKind::Delete, name, Bytes::new()));
                    } else {
                        live[index] = true;
                        let value = Bytes::from(format!("{{\"write\":{write}}}"));
                        ops.push(Op::put(&name, value.clone()));
                        planned.push((EventKind::Put, name, value));
                    }
                }
                let response = store.txn(Txn::default().and_then(ops)).await.unwrap();
                expected.extend(
                    planned
                        .into_iter()
                        .map(|(kind, key, value)| (kind, key, value, response.revision)),
                );
                tokio::task::yield_now().await;
            }
            expected
        })
    };

    let expected = writer.await.unwrap();
    assert_eq!(expected.len(), WRITES * 3);
    assert_eq!(expected.last().map(|event| event.3), Some(last));
    let mut reference: Option<Vec<Event>> = None;
    for (index, watcher) in watchers.into_iter().enumerate() {
        let events = watcher.await.unwrap();
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
        if index % 2 == 0 {
            for event in &events {
                let prev = event.prev_kv.as_ref();
                assert_eq!(
                    event.kind == EventKind::Delete,
                    prev.is_some() && event.kv.version == 0
                );
            }
        }
        let events: Vec<Event> = events
            .into_iter()
            .map(|event| Event {
                prev_kv: None,
                ..event
            })
            .collect();
        match &reference {
            None => reference = Some(events),
            Some(reference) => assert_eq!(&events, reference, "watcher {index} against watcher 0"),
        }
    }
}

/// A watch from a compacted revision gets `Compacted` as its first item and ends; a watcher that
/// falls behind a compaction gets `Compacted` where it stopped, and ends; a watch from the
/// compaction revision itself is served.
#[tokio::test]
async fn a_watch_from_a_compacted_revision_gets_compacted() {
    let store = MemoryStore::new();
    let start = store.current_revision().await.unwrap();
    let pods = || WatchRequest::new(KeyRange::Prefix(PREFIX.into()));
    let put = |index: usize| {
        let store = store.clone();
        async move {
            store
                .put(&format!("{PREFIX}default/pod-{index}"), Bytes::from("{}"))
                .await
                .unwrap()
        }
    };
    let mut lagging = store.watch(pods()).await.unwrap();
    put(0).await;
    let first = lagging.next().await.unwrap().unwrap();
    assert_eq!(first.revision, start + 1);
    for index in 1..10 {
        put(index).await;
    }
    let compact_to = start + 8;
    store.compact(compact_to).await.unwrap();

    let mut stream = store.watch(pods().from(start + 1)).await.unwrap();
    assert_eq!(
        stream.next().await,
        Some(Err(StoreError::Compacted {
            revision: start + 1,
            compact_revision: compact_to
        }))
    );
    assert_eq!(stream.next().await, None, "the stream ends after Compacted");

    assert_eq!(
        lagging.next().await,
        Some(Err(StoreError::Compacted {
            revision: start + 2,
            compact_revision: compact_to
        })),
        "the lagging watcher had delivered up to {}",
        start + 1
    );
    assert_eq!(lagging.next().await, None);

    let mut from_compaction = store.watch(pods().from(compact_to)).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let response = from_compaction.next().await.unwrap().unwrap();
        seen.extend(response.events.iter().map(|event| event.kv.mod_revision));
    }
    assert_eq!(seen, vec![compact_to, compact_to + 1, compact_to + 2]);
}
