//! The store conformance suite on the in-memory reference store, one test per case, with paused
//! time (see `orchestra_core::store::testing` for what each case checks):
//!
//! `put_get_delete`, `range_reads`, `txn_compares`, `txn_atomicity`, `model_based`,
//! `concurrent_compare_and_swap`, `watch_events`, `watch_resume`, `watch_many_watchers`,
//! `watch_compacted`, `watch_progress`, `lease_grant_revoke`, `lease_expiry`, `compaction`.
//!
//! Every backend of this crate runs the same suite, each in a module of this file.

mod memory {
    orchestra_core::store_conformance_tests!(paused_time, || async {
        orchestra_core::store::MemoryStore::new()
    });
}

/// The embedded store, in real time: its committer thread syncs files while the test waits, and
/// paused tokio time would jump ahead during those waits.
mod embedded {
    use orchestra_store::embedded::{EmbeddedOptions, EmbeddedStore};

    /// A store in a fresh folder under cargo's temporary folder for tests.
    async fn fresh() -> EmbeddedStore {
        let dir = tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary folder")
            .keep();
        EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("a fresh store opens")
    }

    orchestra_core::store_conformance_tests!(real_time, fresh);
}

/// The whole suite in one call, as a backend without per-case tests would run it.
#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_whole_suite() {
    orchestra_core::store::testing::run_conformance(|| async {
        orchestra_core::store::MemoryStore::new()
    })
    .await;
}

/// The suite on etcd (cargo feature `etcd`), one test per case, in real time: etcd keeps its own
/// clock, and its leases count in seconds.
///
/// etcd is found through `ORCHESTRA_ETCD_ENDPOINTS` (comma-separated endpoints; `scripts/test.sh`
/// sets it), or else started with `scripts/etcd.sh start` (a single member on a loopback port,
/// left running for the next run; `scripts/etcd.sh stop` stops it). When neither works, each
/// case fails under `CI=true` and otherwise prints a notice and passes without running.
///
/// The cases share that one etcd, whose revisions are global, so each case gets a store of its
/// own under a key prefix no other store uses, and the cases run one at a time (the suite assumes
/// that no one else writes while a case runs): each store holds a turn of one process-wide lock
/// for as long as it lives.
#[cfg(feature = "etcd")]
mod etcd {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, LazyLock, OnceLock};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use async_trait::async_trait;
    use orchestra_core::store::{
        Lease, LeaseId, RangeRequest, RangeResponse, Result, Revision, Store, Txn, TxnResponse,
        WatchRequest, WatchStream,
    };
    use orchestra_store::etcd::{EtcdOptions, EtcdStore};
    use tokio::sync::{Mutex, OwnedMutexGuard};

    /// The turns: one case at a time on the shared etcd.
    static TURN: LazyLock<Arc<Mutex<()>>> = LazyLock::new(|| Arc::new(Mutex::new(())));

    /// etcd's endpoints, or `None` (after a notice) when there is no etcd and no CI.
    fn endpoints() -> Option<Vec<String>> {
        static ENDPOINTS: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
        let found = ENDPOINTS.get_or_init(|| {
            if let Ok(list) = std::env::var("ORCHESTRA_ETCD_ENDPOINTS") {
                return Ok(list.split(',').map(|e| e.trim().to_owned()).collect());
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/etcd.sh");
            match std::process::Command::new("bash")
                .args([script, "start"])
                .output()
            {
                Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .split(',')
                    .map(str::to_owned)
                    .collect()),
                Ok(out) => Err(format!(
                    "`scripts/etcd.sh start` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(error) => Err(format!("cannot run scripts/etcd.sh: {error}")),
            }
        });
        match found {
            Ok(endpoints) => Some(endpoints.clone()),
            Err(why) if ci() => panic!(
                "etcd is needed for the etcd store's conformance tests and CI=true: {why} \
                 (set ORCHESTRA_ETCD_ENDPOINTS, or install etcd-server for scripts/etcd.sh)"
            ),
            Err(why) => {
                // Past the test harness's capture, so that the notice shows.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: etcd conformance case not run: no etcd ({why}); set \
                     ORCHESTRA_ETCD_ENDPOINTS or install etcd-server (CI=true makes this a failure)"
                );
                None
            }
        }
    }

    fn ci() -> bool {
        std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
    }

    /// A store of its own on the shared etcd, holding the turn.
    async fn fresh(endpoints: Vec<String>) -> Serialized {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let turn = Arc::clone(&TURN).lock_owned().await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let prefix = format!(
            "/orchestra-test/{}-{nanos:x}-{}/",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let options = EtcdOptions::new()
            .key_prefix(prefix)
            .request_timeout(Duration::from_secs(10));
        let store = EtcdStore::connect(&endpoints, options)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot connect to etcd at {endpoints:?} (ORCHESTRA_ETCD_ENDPOINTS or scripts/etcd.sh): {error}")
            });
        Serialized { store, _turn: turn }
    }

    /// An etcd store that holds the turn while it lives.
    #[derive(Debug)]
    struct Serialized {
        store: EtcdStore,
        _turn: OwnedMutexGuard<()>,
    }

    #[async_trait]
    impl Store for Serialized {
        async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
            self.store.range(request).await
        }
        async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
            self.store.txn(txn).await
        }
        async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
            self.store.watch(request).await
        }
        async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
            self.store.lease_grant(ttl).await
        }
        async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
            self.store.lease_keep_alive(id).await
        }
        async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
            self.store.lease_revoke(id).await
        }
        async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration> {
            self.store.lease_time_to_live(id).await
        }
        async fn compact(&self, revision: Revision) -> Result<()> {
            self.store.compact(revision).await
        }
        async fn current_revision(&self) -> Result<Revision> {
            self.store.current_revision().await
        }
    }

    /// Beyond the suite: stores under different key prefixes share one etcd without seeing each
    /// other's keys or events, and a store learns etcd's compaction revision it did not make.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_prefixes_isolate_stores() {
        use bytes::Bytes;
        use futures_util::StreamExt;
        use orchestra_core::store::{KeyRange, StoreError};

        let Some(endpoints) = endpoints() else { return };
        let a = fresh(endpoints.clone()).await;
        // The second store shares the first one's turn. Neither prefix is a prefix of the other
        // (`{a}b/` would be: a's key `b/k` is b's key `k`).
        let sibling = format!("{}-b/", a.store.key_prefix().trim_end_matches('/'));
        let b = EtcdStore::connect(&endpoints, EtcdOptions::new().key_prefix(sibling))
            .await
            .expect("connect a second store");
        let mut a_events = a
            .watch(WatchRequest::new(KeyRange::Prefix(String::new())))
            .await
            .expect("watch every key of a");
        let written_a = a.put("/k", Bytes::from_static(b"a")).await.expect("put");
        let written_b = b.put("/k", Bytes::from_static(b"b")).await.expect("put");
        assert_eq!(written_b, written_a + 1, "one revision counter");
        let all_a = a.range(RangeRequest::prefix("")).await.expect("read a");
        let keys: Vec<_> = all_a
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]))
            .collect();
        assert_eq!(
            keys,
            [("/k", &b"a"[..])],
            "a sees only its own key, without its prefix"
        );
        let all_b = b.range(RangeRequest::prefix("/")).await.expect("read b");
        assert_eq!(all_b.kvs.len(), 1);
        assert_eq!(all_b.kvs[0].value, Bytes::from_static(b"b"));
        let third = a.put("/z", Bytes::new()).await.expect("put");
        let response = a_events.next().await.expect("an event").expect("no error");
        assert_eq!(response.events[0].kv.key, "/k");
        let response = a_events.next().await.expect("an event").expect("no error");
        assert_eq!(
            (response.events[0].kv.key.as_str(), response.revision),
            ("/z", third),
            "b's write is not a's event"
        );

        // A key under a's prefix that is not UTF-8 (another etcd client wrote it) fails a's reads
        // of it, and nothing else.
        let mut raw = etcd_client::Client::connect(&endpoints, None)
            .await
            .expect("a raw etcd client");
        let mut odd = format!("{}/odd-", a.store.key_prefix()).into_bytes();
        // (a's key `/odd-` and a byte that UTF-8 never has)
        odd.push(0xff);
        raw.put(odd, "x", None).await.expect("a raw put");
        assert!(matches!(
            a.range(RangeRequest::prefix("/o")).await,
            Err(StoreError::InvalidRequest(_))
        ));
        assert!(a.get("/k").await.expect("get").is_some());

        a.compact(third).await.expect("compact");
        assert_eq!(a.store.compact_revision().await, Ok(third));
        assert_eq!(b.compact_revision().await, Ok(third), "learned by reading");
    }

    orchestra_core::store_conformance_tests!(real_time, {
        // Without etcd and without CI, the case returns here, after a notice.
        let Some(endpoints) = endpoints() else { return };
        move || fresh(endpoints.clone())
    });
}
