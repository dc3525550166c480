//! A store that delivers watch events late, twice, out of order across objects, and breaks
//! watches: the faults a controller must survive without doing anything twice.
//!
//! [`ChaosStore`] wraps another store and passes reads, writes and leases straight through. Its
//! watch streams perturb what they deliver, with the probabilities of a [`ChaosConfig`] and the
//! randomness of a seeded [`SimRng`]:
//!
//! - **delay**: an event is held back for up to `max_delay` while the events of other keys pass
//!   it, so a controller sees, say, a ReplicaSet's update before the pod creations that preceded
//!   it (different watches of a real cluster give no order between each other);
//! - **duplicate**: an event is delivered twice in a row;
//! - **break**: after a response the watch ends with [`StoreError::Unavailable`], once everything
//!   held back is delivered, and the watcher above must resume (the API answers a resumed watch
//!   with every change after the last revision it delivered).
//!
//! The events of one key keep their order, and a progress notification (a bookmark) is delivered
//! only after every event it covers, so that a resumed watch loses nothing: what a real store
//! promises per key, nothing more across keys.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::random::SimRng;
use crate::store::{
    Event, Lease, LeaseId, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, Txn,
    TxnResponse, WatchRequest, WatchResponse, WatchStream,
};

/// How often a [`ChaosStore`]'s watches misbehave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosConfig {
    /// The probability that an event is delivered twice.
    pub duplicate: f64,
    /// The probability that an event is held back.
    pub delay: f64,
    /// The longest an event is held back.
    pub max_delay: Duration,
    /// The probability, after each response, that the watch breaks.
    pub break_watch: f64,
}

impl Default for ChaosConfig {
    /// 10% duplicated, 20% delayed by up to 500 ms, 1% of responses breaking the watch.
    fn default() -> ChaosConfig {
        ChaosConfig {
            duplicate: 0.1,
            delay: 0.2,
            max_delay: Duration::from_millis(500),
            break_watch: 0.01,
        }
    }
}

impl ChaosConfig {
    /// No faults at all (the wrapped store's watches, event by event).
    pub fn none() -> ChaosConfig {
        ChaosConfig {
            duplicate: 0.0,
            delay: 0.0,
            max_delay: Duration::ZERO,
            break_watch: 0.0,
        }
    }
}

/// A store whose watches misbehave: see the [module documentation](self).
#[derive(Clone)]
pub struct ChaosStore {
    inner: Arc<dyn Store>,
    config: ChaosConfig,
    rng: Arc<Mutex<SimRng>>,
}

impl fmt::Debug for ChaosStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosStore")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChaosStore {
    /// Wraps `inner`; every watch draws its faults from a generator forked from `rng`.
    pub fn new(inner: Arc<dyn Store>, config: ChaosConfig, rng: SimRng) -> ChaosStore {
        ChaosStore {
            inner,
            config,
            rng: Arc::new(Mutex::new(rng)),
        }
    }
}

#[async_trait]
impl Store for ChaosStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.inner.range(request).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.inner.txn(txn).await
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        let stream = self.inner.watch(request).await?;
        let rng = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fork();
        let state = ChaosWatch {
            inner: Some(stream),
            held: BTreeMap::new(),
            sequence: 0,
            key_release: BTreeMap::new(),
            latest: Instant::now(),
            rng,
            config: self.config,
        };
        Ok(futures_util::stream::unfold(state, |mut state| async move {
            state.next().await.map(|item| (item, state))
        })
        .boxed())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        self.inner.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.inner.lease_revoke(id).await
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration> {
        self.inner.lease_time_to_live(id).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
}

/// Something a chaotic watch will deliver.
enum Held {
    Event(Event),
    Progress(WatchResponse),
    Error(StoreError),
}

struct ChaosWatch {
    /// The wrapped watch, until it ends (or is broken on purpose).
    inner: Option<WatchStream>,
    /// What is held back, by release time then arrival.
    held: BTreeMap<(Instant, u64), Held>,
    sequence: u64,
    /// The release time of each key's latest held event (a key's events keep their order).
    key_release: BTreeMap<String, Instant>,
    /// The latest release time of anything held.
    latest: Instant,
    rng: SimRng,
    config: ChaosConfig,
}

impl ChaosWatch {
    fn hold(&mut self, at: Instant, item: Held) {
        self.sequence += 1;
        self.latest = self.latest.max(at);
        self.held.insert((at, self.sequence), item);
    }

    /// Takes in one response of the wrapped watch.
    fn receive(&mut self, response: Option<Result<WatchResponse>>) {
        let now = Instant::now();
        match response {
            None => self.inner = None,
            Some(Err(error)) => {
                self.hold(self.latest.max(now), Held::Error(error));
                self.inner = None;
            }
            Some(Ok(response)) if response.progress => {
                self.hold(self.latest.max(now), Held::Progress(response));
            }
            Some(Ok(response)) => {
                for event in response.events {
                    let mut at = now;
                    if self.rng.chance(self.config.delay) {
                        at += self.rng.between(Duration::ZERO, self.config.max_delay);
                    }
                    let key = event.kv.key.clone();
                    if let Some(previous) = self.key_release.get(&key) {
                        at = at.max(*previous);
                    }
                    self.key_release.insert(key, at);
                    if self.rng.chance(self.config.duplicate) {
                        self.hold(at, Held::Event(event.clone()));
                    }
                    self.hold(at, Held::Event(event));
                }
                if self.rng.chance(self.config.break_watch) {
                    let at = self.latest.max(now);
                    self.hold(
                        at,
                        Held::Error(StoreError::Unavailable(
                            "watch broken by the chaos store".into(),
                        )),
                    );
                    self.inner = None;
                }
            }
        }
        // Forget keys whose events have all been released, so the map stays small.
        self.key_release.retain(|_, at| *at > now);
    }

    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            let now = Instant::now();
            if let Some(entry) = self.held.first_entry()
                && entry.key().0 <= now
            {
                return Some(match entry.remove() {
                    Held::Event(event) => Ok(WatchResponse {
                        revision: event.kv.mod_revision,
                        events: vec![event],
                        progress: false,
                    }),
                    Held::Progress(response) => Ok(response),
                    Held::Error(error) => Err(error),
                });
            }
            let due = self.held.first_key_value().map(|((at, _), _)| *at);
            match (&mut self.inner, due) {
                (None, None) => return None,
                (None, Some(due)) => tokio::time::sleep_until(due).await,
                (Some(inner), None) => {
                    let response = inner.next().await;
                    self.receive(response);
                }
                (Some(inner), Some(due)) => {
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(due) => {}
                        response = inner.next() => self.receive(response),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{EventKind, KeyRange, MemoryStore};

    async fn collect(stream: &mut WatchStream, count: usize) -> Vec<(String, Revision)> {
        let mut seen = Vec::new();
        while seen.len() < count {
            match stream.next().await {
                Some(Ok(response)) => {
                    for event in response.events {
                        assert_eq!(event.kind, EventKind::Put);
                        seen.push((event.kv.key, event.kv.mod_revision));
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn keys_keep_their_order_while_keys_interleave() {
        let memory = MemoryStore::new();
        let config = ChaosConfig {
            duplicate: 0.3,
            delay: 0.5,
            max_delay: Duration::from_millis(100),
            break_watch: 0.0,
        };
        let store = ChaosStore::new(Arc::new(memory.clone()), config, SimRng::new(5));
        let mut stream = store
            .watch(WatchRequest::new(KeyRange::Prefix("/k/".into())))
            .await
            .unwrap();
        for round in 0..20 {
            for key in ["a", "b", "c"] {
                memory
                    .put(&format!("/k/{key}"), Bytes::from(format!("{round}")))
                    .await
                    .unwrap();
            }
        }
        let seen = collect(&mut stream, 60).await;
        assert!(seen.len() >= 60);
        let mut duplicates = 0;
        let mut reordered = false;
        let mut last_overall = 0;
        let mut last: BTreeMap<String, Revision> = BTreeMap::new();
        for (key, revision) in &seen {
            let previous = last.insert(key.clone(), *revision).unwrap_or(0);
            assert!(
                *revision >= previous,
                "{key} went back from {previous} to {revision}"
            );
            if *revision == previous {
                duplicates += 1;
            }
            reordered |= *revision < last_overall;
            last_overall = last_overall.max(*revision);
        }
        assert!(duplicates > 0, "no duplicates in {seen:?}");
        assert!(reordered, "nothing reordered in {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_watch_delivers_what_it_held_first() {
        let memory = MemoryStore::new();
        let config = ChaosConfig {
            duplicate: 0.0,
            delay: 1.0,
            max_delay: Duration::from_millis(100),
            break_watch: 1.0,
        };
        let store = ChaosStore::new(Arc::new(memory.clone()), config, SimRng::new(1));
        let mut stream = store
            .watch(WatchRequest::new(KeyRange::Prefix("/k/".into())))
            .await
            .unwrap();
        let revision = memory.put("/k/a", Bytes::from("1")).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.revision, revision);
        assert!(matches!(
            stream.next().await,
            Some(Err(StoreError::Unavailable(_)))
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn without_faults_everything_passes_in_order() {
        let memory = MemoryStore::new();
        let store = ChaosStore::new(
            Arc::new(memory.clone()),
            ChaosConfig::none(),
            SimRng::new(1),
        );
        let mut stream = store
            .watch(WatchRequest::new(KeyRange::Prefix("/k/".into())))
            .await
            .unwrap();
        let mut expected = Vec::new();
        for key in ["x", "y", "z"] {
            let revision = memory
                .put(&format!("/k/{key}"), Bytes::new())
                .await
                .unwrap();
            expected.push((format!("/k/{key}"), revision));
        }
        assert_eq!(collect(&mut stream, 3).await, expected);
    }
}
