//! The embedded store across restarts: what was acknowledged is there after reopening (keys,
//! revisions, history for watches, leases by the wall clock), checkpoints, retention, backups,
//! damaged files (a torn tail is cut off, damage elsewhere refuses to open), the folder lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use orchestra_core::store::{EventKind, KeyRange, RangeRequest, Store, WatchRequest};
use orchestra_store::embedded::{EmbeddedOptions, EmbeddedStore, OpenError};

fn folder() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("embedded-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary folder")
}

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("the store opens")
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .collect();
    found.sort();
    found
}

async fn value(store: &EmbeddedStore, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .unwrap()
        .map(|kv| String::from_utf8(kv.value.to_vec()).unwrap())
}

#[tokio::test]
async fn everything_acknowledged_is_there_after_reopening() {
    let dir = folder();
    let (revision, first) = {
        let store = open(dir.path());
        let first = store.put("/a", Bytes::from_static(b"1")).await.unwrap();
        store.put("/a", Bytes::from_static(b"2")).await.unwrap();
        store.put("/b", Bytes::from_static(b"1")).await.unwrap();
        store.delete("/b").await.unwrap();
        (store.current_revision().await.unwrap(), first)
    };
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(value(&store, "/a").await.as_deref(), Some("2"));
    assert_eq!(value(&store, "/b").await, None);
    let a = store.get("/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (first, 2));
    // History: the past is readable, and a watch replays it with previous values.
    let past = store
        .range(RangeRequest::key("/a").at(first))
        .await
        .unwrap();
    assert_eq!(past.kvs[0].value, Bytes::from_static(b"1"));
    let mut events = store
        .watch(
            WatchRequest::new(KeyRange::Prefix("/".into()))
                .from(first)
                .with_prev_kv(),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let response = events.next().await.unwrap().unwrap();
        seen.extend(
            response
                .events
                .into_iter()
                .map(|e| (e.kind, e.kv.key, e.prev_kv.is_some())),
        );
    }
    assert_eq!(
        seen,
        [
            (EventKind::Put, "/a".to_owned(), false),
            (EventKind::Put, "/a".to_owned(), true),
            (EventKind::Put, "/b".to_owned(), false),
            (EventKind::Delete, "/b".to_owned(), true),
        ]
    );
    // Writes go on from where the store was.
    assert_eq!(
        store.put("/c", Bytes::from_static(b"1")).await.unwrap(),
        revision + 1
    );
}

#[tokio::test]
async fn leases_count_wall_clock_time_across_restarts() {
    let dir = folder();
    let (short, long) = {
        let store = open(dir.path());
        let short = store.lease_grant(Duration::from_secs(1)).await.unwrap();
        let long = store.lease_grant(Duration::from_secs(60)).await.unwrap();
        for (key, lease) in [("/short", short.id), ("/long", long.id)] {
            let put = orchestra_core::store::Op::Put {
                key: key.into(),
                value: Bytes::from_static(b"x"),
                lease: Some(lease),
            };
            store
                .txn(orchestra_core::store::Txn::default().and_then([put]))
                .await
                .unwrap();
        }
        (short, long)
    };
    // The short lease runs out while the store is closed.
    std::thread::sleep(Duration::from_millis(1_500));
    let store = open(dir.path());
    assert_eq!(value(&store, "/short").await, None, "expired while closed");
    assert!(store.lease_time_to_live(short.id).await.is_err());
    assert_eq!(value(&store, "/long").await.as_deref(), Some("x"));
    let left = store.lease_time_to_live(long.id).await.unwrap();
    assert!(
        left > Duration::from_secs(55) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    // New leases do not reuse ids.
    let next = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert!(next.id > long.id);
}

#[tokio::test]
async fn checkpoints_replace_the_log_they_cover() {
    let dir = folder();
    let options = EmbeddedOptions {
        checkpoint_bytes: 16 * 1024,
        retention: None,
    };
    let value_of = |i: usize| Bytes::from(format!("{i:0>200}"));
    {
        let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
        for i in 0..400 {
            store
                .put(&format!("/k/{}", i % 50), value_of(i))
                .await
                .unwrap();
        }
        // The checkpoint is written by the committer, in order with the writes: one more write
        // makes sure it ran.
        store.put("/last", Bytes::from_static(b"1")).await.unwrap();
    }
    assert_eq!(
        files(dir.path(), "snapshot-").len(),
        1,
        "one checkpoint is kept"
    );
    assert!(
        files(dir.path(), "wal-").len() <= 2,
        "covered segments are dropped"
    );
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    for key in 0..50 {
        let last = (0..400).filter(|i| i % 50 == key).max().unwrap();
        assert_eq!(
            store
                .get(&format!("/k/{key}"))
                .await
                .unwrap()
                .unwrap()
                .value,
            value_of(last)
        );
    }
    assert_eq!(store.current_revision().await.unwrap(), 402);
}

#[tokio::test]
async fn history_is_compacted_to_the_retention() {
    let dir = folder();
    let options = EmbeddedOptions {
        retention: Some(10),
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    for i in 0..100 {
        store.put("/k", Bytes::from(i.to_string())).await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    let old = store.range(RangeRequest::key("/k").at(current - 50)).await;
    assert!(old.is_err(), "old history is compacted");
    assert!(
        store
            .range(RangeRequest::key("/k").at(current - 9))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn backups_restore_the_store_as_it_was() {
    let dir = folder();
    let backup = dir.path().join("backup.img");
    let restored = dir.path().join("restored");
    let store = open(&dir.path().join("data"));
    for i in 0..100 {
        store
            .put(&format!("/k/{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let lease = store.lease_grant(Duration::from_secs(300)).await.unwrap();
    let at_backup = store.current_revision().await.unwrap();
    store.backup(&backup).unwrap();
    store.put("/after", Bytes::from_static(b"1")).await.unwrap();

    EmbeddedStore::restore(&backup, &restored).unwrap();
    let copy = open(&restored);
    assert_eq!(copy.current_revision().await.unwrap(), at_backup);
    assert_eq!(value(&copy, "/k/42").await.as_deref(), Some("42"));
    assert_eq!(value(&copy, "/after").await, None);
    assert!(copy.lease_time_to_live(lease.id).await.is_ok());
    // A restore never overwrites a store.
    drop(copy);
    assert!(matches!(
        EmbeddedStore::restore(&backup, &restored),
        Err(OpenError::NotEmpty { .. })
    ));
    // A damaged backup is refused.
    let mut bytes = fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&backup, bytes).unwrap();
    assert!(matches!(
        EmbeddedStore::restore(&backup, dir.path().join("other")),
        Err(OpenError::Corrupt { .. })
    ));
}

async fn write_some(dir: &Path, count: usize) -> i64 {
    let store = open(dir);
    for i in 0..count {
        store
            .put(&format!("/k/{i}"), Bytes::from(format!("value-{i}")))
            .await
            .unwrap();
    }
    store.current_revision().await.unwrap()
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_durable_prefix_served() {
    let dir = folder();
    let revision = write_some(dir.path(), 50).await;
    let segment = files(dir.path(), "wal-").pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    // A crash in the middle of the last batch: part of its last record was written.
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(length - 7).unwrap();
    drop(file);
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), revision - 1);
    assert_eq!(value(&store, "/k/48").await.as_deref(), Some("value-48"));
    assert_eq!(value(&store, "/k/49").await, None);
    store.put("/next", Bytes::from_static(b"1")).await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), revision);

    // Garbage, or zeros, after the last record (a crash after the file grew).
    drop(store);
    let segment = files(dir.path(), "wal-").pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&segment, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), revision);
    drop(store);
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0x17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    fs::write(&segment, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), revision);
}

#[tokio::test]
async fn damage_inside_the_log_or_a_checkpoint_refuses_to_open() {
    let dir = folder();
    write_some(dir.path(), 50).await;
    let segment = files(dir.path(), "wal-").pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&segment, &bytes).unwrap();
    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(OpenError::Corrupt { path, .. }) => assert_eq!(path, segment),
        other => panic!("a damaged log must not open: {other:?}"),
    }

    let dir = folder();
    {
        let store = open(dir.path());
        store.put("/a", Bytes::from_static(b"1")).await.unwrap();
        store.checkpoint();
        store.put("/b", Bytes::from_static(b"1")).await.unwrap();
    }
    let snapshot = files(dir.path(), "snapshot-")
        .pop()
        .expect("a checkpoint was written");
    let mut bytes = fs::read(&snapshot).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    fs::write(&snapshot, &bytes).unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default()),
        Err(OpenError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn one_process_at_a_time() {
    let dir = folder();
    let store = open(dir.path());
    assert!(matches!(
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default()),
        Err(OpenError::Locked { .. })
    ));
    drop(store);
    open(dir.path());
}

#[tokio::test]
async fn repeated_checkpoints_lose_nothing() {
    let dir = folder();
    {
        let store = open(dir.path());
        store.put("/a", Bytes::from_static(b"1")).await.unwrap();
        store.checkpoint();
        store.checkpoint();
        store.put("/b", Bytes::from_static(b"1")).await.unwrap();
        store.checkpoint();
        store.checkpoint();
        store.checkpoint();
        store.put("/c", Bytes::from_static(b"1")).await.unwrap();
        store.checkpoint();
        store.checkpoint();
        // What follows a repeated checkpoint is only in the log.
        store.put("/d", Bytes::from_static(b"1")).await.unwrap();
    }
    assert_eq!(files(dir.path(), "snapshot-").len(), 1);
    let store = open(dir.path());
    for key in ["/a", "/b", "/c", "/d"] {
        assert_eq!(value(&store, key).await.as_deref(), Some("1"), "{key}");
    }
    assert_eq!(store.current_revision().await.unwrap(), 5);
}
