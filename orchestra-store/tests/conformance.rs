//! The store conformance suite on the in-memory reference store, one test per case, with paused
//! time (see `orchestra_core::store::testing` for what each case checks):
//!
//! `put_get_delete`, `range_reads`, `txn_compares`, `txn_atomicity`, `model_based`,
//! `concurrent_compare_and_swap`, `watch_events`, `watch_resume`, `watch_many_watchers`,
//! `watch_compacted`, `watch_progress`, `lease_grant_revoke`, `lease_expiry`, `compaction`.
//!
//! The durable backends of this crate will run the same suite, each in a module of this file.

mod memory {
    orchestra_core::store_conformance_tests!(paused_time, || async {
        orchestra_core::store::MemoryStore::new()
    });
}

/// The whole suite in one call, as a backend without per-case tests would run it.
#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_whole_suite() {
    orchestra_core::store::testing::run_conformance(|| async {
        orchestra_core::store::MemoryStore::new()
    })
    .await;
}
