//! The watch streams of the etcd store: one etcd watch on a gRPC stream of its own, resumed when
//! the stream breaks, with progress notifications requested from the client side (see the
//! [module documentation](super#watches-and-progress-notifications)).

use std::time::Duration;

use etcd_client::proto::{PbEvent, PbWatchResponse};
use etcd_client::{EventType, WatchOptions};
use futures_util::StreamExt;
use orchestra_core::store::{
    Event, EventKind, Result, Revision, Store, StoreError, WatchRequest, WatchResponse, WatchStream,
};
use tokio::time::Instant;

use super::{EtcdStore, classify, header_revision};

/// The shortest idle time before a progress request: etcd's watchers that start in the past
/// catch up in passes 100 ms apart, and a progress answer is only sound once they have.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The longest pause between two attempts to open a broken watch again.
const MAX_RESUME_DELAY: Duration = Duration::from_secs(1);

/// Opens a watch: waits until etcd has created it, checks the start revision, and returns the
/// stream.
pub(super) async fn open(store: EtcdStore, request: WatchRequest) -> Result<WatchStream> {
    let Some((key, range_end)) = store.span(&request.range) else {
        return empty(store, request).await;
    };
    let (stream, at) = match create(&store, &key, &range_end, request.start_revision).await {
        Ok(created) => created,
        // A compacted start revision is the stream's first item, as the contract says.
        Err(error @ StoreError::Compacted { .. }) => {
            return Ok(futures_util::stream::iter([Err(error)]).boxed());
        }
        Err(error) => return Err(error),
    };
    let next = match request.start_revision {
        None => at + 1,
        Some(start) => {
            // etcd waits for a future revision; the contract refuses one after the next write's.
            // The member that created the watch may lag behind the leader: ask linearizably
            // before refusing.
            if start > at + 1 {
                let current = store.current_revision().await?;
                if start > current + 1 {
                    return Err(StoreError::FutureRevision {
                        revision: start,
                        current,
                    });
                }
            }
            start
        }
    };
    let progress = request
        .progress_notify
        .map(|interval| interval.max(MIN_PROGRESS_INTERVAL));
    let watcher = Watcher {
        idle_until: deadline(progress.unwrap_or(Duration::ZERO)),
        store,
        key,
        range_end,
        prev_kv: request.prev_kv,
        progress,
        stream: Some(stream),
        broken: String::new(),
        next,
        pending: None,
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

/// Creates an etcd watch from `start` (`None`: the next write) and waits for etcd to confirm it;
/// returns the stream and etcd's revision then.
async fn create(
    store: &EtcdStore,
    key: &[u8],
    range_end: &[u8],
    start: Option<Revision>,
) -> Result<(etcd_client::WatchStream, Revision)> {
    // Previous values always: a delete event needs the key's create revision, which etcd only
    // sends in the previous value.
    let mut options = WatchOptions::new()
        .with_range(range_end.to_vec())
        .with_prev_key();
    if let Some(start) = start {
        options = options.with_start_revision(start);
    }
    let creating = async {
        let mut stream = store
            .send(|member| {
                let (mut client, key, options) =
                    (member.watch.clone(), key.to_vec(), options.clone());
                async move { client.watch(key, Some(options)).await }
            })
            .await
            .map_err(|error| classify(&error).into_error())?;
        match stream.message().await {
            Ok(Some(response)) if response.0.created => {
                let response = response.0;
                if response.canceled {
                    return Err(if response.compact_revision > 0 {
                        StoreError::Compacted {
                            revision: start.unwrap_or(0),
                            compact_revision: response.compact_revision,
                        }
                    } else {
                        StoreError::InvalidRequest(format!(
                            "etcd refused the watch: {}",
                            response.cancel_reason
                        ))
                    });
                }
                Ok((stream, header_revision(response.header.as_ref())?))
            }
            Ok(Some(_)) => Err(StoreError::Unavailable(
                "etcd answered a watch request with something else than its creation".to_owned(),
            )),
            Ok(None) => Err(StoreError::Unavailable(
                "etcd closed the watch stream".to_owned(),
            )),
            Err(error) => Err(classify(&error).into_error()),
        }
    };
    tokio::time::timeout(store.shared.request_timeout, creating)
        .await
        .map_err(|_| StoreError::Unavailable("etcd did not create the watch in time".to_owned()))?
}

/// A watch of a range that covers no key: it never has an event; its progress notifications
/// carry etcd's current revision, which it has trivially delivered everything up to.
async fn empty(store: EtcdStore, request: WatchRequest) -> Result<WatchStream> {
    if let Some(start) = request.start_revision {
        let current = store.current_revision().await?;
        if start > current + 1 {
            return Err(StoreError::FutureRevision {
                revision: start,
                current,
            });
        }
    }
    let Some(interval) = request.progress_notify else {
        return Ok(futures_util::stream::pending().boxed());
    };
    let interval = interval.max(MIN_PROGRESS_INTERVAL);
    Ok(
        futures_util::stream::unfold(Some(store), move |store| async move {
            let store = store?;
            tokio::time::sleep(interval).await;
            match store.current_revision().await {
                Ok(revision) => Some((
                    Ok(WatchResponse {
                        revision,
                        events: Vec::new(),
                        progress: true,
                    }),
                    Some(store),
                )),
                Err(error) => Some((Err(error), None)),
            }
        })
        .boxed(),
    )
}

/// The state of one watch stream.
struct Watcher {
    store: EtcdStore,
    /// etcd's key and range end of the watch.
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// Whether the events carry previous values.
    prev_kv: bool,
    /// The idle time before a progress request (`None`: no notifications).
    progress: Option<Duration>,
    /// The etcd watch (`None`: it broke, to be opened again).
    stream: Option<etcd_client::WatchStream>,
    /// Why it broke.
    broken: String,
    /// The first revision not delivered yet.
    next: Revision,
    /// When to request progress if no event comes.
    idle_until: Instant,
    /// A revision etcd reported progress at, waiting for a second answer to confirm it.
    pending: Option<Revision>,
    /// Whether the stream has ended.
    finished: bool,
}

impl Watcher {
    async fn next_item(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            if self.finished {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                if let Err(error) = self.resume().await {
                    self.finished = true;
                    return Some(Err(error));
                }
                continue;
            };
            let message = match self.progress {
                None => Some(stream.message().await),
                // `message` only polls the stream, so dropping it at the deadline loses nothing.
                Some(_) => tokio::time::timeout_at(self.idle_until, stream.message())
                    .await
                    .ok(),
            };
            match message {
                None => {
                    // Idle for the interval: ask etcd where it is.
                    self.idle_until = deadline(self.progress.unwrap_or(Duration::ZERO));
                    if let Err(error) = stream.request_progress().await {
                        self.break_off(error.to_string());
                    }
                }
                Some(Ok(Some(response))) => {
                    if let Some(item) = self.answer(response.0).await {
                        return Some(item);
                    }
                }
                Some(Ok(None)) => self.break_off("etcd closed the watch stream".to_owned()),
                Some(Err(error)) => self.break_off(error.to_string()),
            }
        }
    }

    /// Takes one of etcd's watch responses: an item for the stream, or nothing yet.
    async fn answer(&mut self, response: PbWatchResponse) -> Option<Result<WatchResponse>> {
        if response.canceled {
            if response.compact_revision > 0 {
                self.store.shared.compacted.fetch_max(
                    response.compact_revision,
                    std::sync::atomic::Ordering::Relaxed,
                );
                self.finished = true;
                return Some(Err(StoreError::Compacted {
                    revision: self.next,
                    compact_revision: response.compact_revision,
                }));
            }
            // etcd gave up on the watch (its member lost the leader, say): open it again.
            self.break_off(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason
            ));
            return None;
        }
        if response.created {
            return None;
        }
        if response.events.is_empty() {
            return self.progress_answer(&response).await;
        }
        let mut events = Vec::with_capacity(response.events.len());
        for event in response.events {
            match self.event(event) {
                // Never repeat a revision (a resumed watch starts after the last delivered).
                Ok(event) if event.kv.mod_revision >= self.next => events.push(event),
                Ok(_) => {}
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            }
        }
        let revision = events.last()?.kv.mod_revision;
        self.next = revision + 1;
        self.pending = None;
        self.idle_until = deadline(self.progress.unwrap_or(Duration::ZERO));
        Some(Ok(WatchResponse {
            revision,
            events,
            progress: false,
        }))
    }

    /// A progress answer: the first of a round is held until a second answer, requested after
    /// it arrived, confirms it (older etcd versions may send an answer ahead of events queued
    /// for the stream, never two).
    async fn progress_answer(
        &mut self,
        response: &PbWatchResponse,
    ) -> Option<Result<WatchResponse>> {
        let interval = self.progress?;
        let revision = header_revision(response.header.as_ref()).ok()?;
        if let Some(confirmed) = self.pending.take() {
            self.idle_until = deadline(interval);
            return Some(Ok(WatchResponse {
                revision: confirmed.max(self.next - 1),
                events: Vec::new(),
                progress: true,
            }));
        }
        self.pending = Some(revision);
        if let Some(stream) = self.stream.as_mut()
            && let Err(error) = stream.request_progress().await
        {
            self.break_off(error.to_string());
        }
        None
    }

    /// A store event of an etcd one.
    fn event(&self, event: PbEvent) -> Result<Event> {
        let kind = match EventType::try_from(event.r#type) {
            Ok(EventType::Put) => EventKind::Put,
            Ok(EventType::Delete) => EventKind::Delete,
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "etcd sent an event of an unknown type ({})",
                    event.r#type
                )));
            }
        };
        let Some(kv) = event.kv else {
            return Err(StoreError::Unavailable(
                "etcd sent an event without a key".to_owned(),
            ));
        };
        let created = event
            .prev_kv
            .as_ref()
            .map_or(0, |prev| prev.create_revision);
        let prev_kv = match event.prev_kv {
            Some(prev) if self.prev_kv => Some(self.store.key_value(prev)?),
            _ => None,
        };
        let mut kv = self.store.key_value(kv)?;
        if kind == EventKind::Delete {
            kv.create_revision = created;
            kv.version = 0;
            kv.lease = None;
        }
        Ok(Event { kind, kv, prev_kv })
    }

    /// Drops a broken etcd watch, to be opened again.
    fn break_off(&mut self, why: String) {
        self.stream = None;
        self.pending = None;
        self.broken = why;
    }

    /// Opens the etcd watch again from the first revision not delivered, through any member,
    /// retrying for the store's `watch_resume` period.
    async fn resume(&mut self) -> Result<()> {
        let give_up = Instant::now() + self.store.shared.watch_resume;
        let mut delay = Duration::from_millis(50);
        let mut why = std::mem::take(&mut self.broken);
        while Instant::now() < give_up {
            match create(&self.store, &self.key, &self.range_end, Some(self.next)).await {
                Ok((stream, _)) => {
                    self.stream = Some(stream);
                    self.idle_until = deadline(self.progress.unwrap_or(Duration::ZERO));
                    return Ok(());
                }
                Err(StoreError::Compacted {
                    compact_revision, ..
                }) => {
                    return Err(StoreError::Compacted {
                        revision: self.next,
                        compact_revision,
                    });
                }
                Err(StoreError::Unavailable(message)) => why = message,
                Err(other) => return Err(other),
            }
            tokio::time::sleep(delay.min(give_up.saturating_duration_since(Instant::now()))).await;
            delay = (delay * 2).min(MAX_RESUME_DELAY);
        }
        Err(StoreError::Unavailable(format!(
            "the watch broke and could not be opened again: {why}"
        )))
    }
}

/// `interval` from now (far in the future when that cannot be told).
fn deadline(interval: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(interval)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}
