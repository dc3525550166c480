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
