//! Recording Events: what a component tells users about an object (`kubectl describe` shows them).
//!
//! An [`EventRecorder`] is client-go's `record.EventRecorder`: a component calls
//! [`EventRecorder::event`] with the object, a type (`Normal` or `Warning`), a reason such as
//! `Scheduled` and a message; the recorder turns it into a `v1` `Event` in the object's namespace
//! and creates it in the background, so that recording never slows the caller down. Like
//! client-go's broadcaster, it queues a bounded number of events and drops the newest when the
//! queue is full (counted by [`EventRecorder::dropped`]): events are advisory, the caller's work is
//! not.
//!
//! # Aggregation
//!
//! Like client-go's `EventCorrelator` (simplified: no spam filter, no "similar events"
//! combining), the recorder does not create an Event again when it recorded an identical one
//! (same involved object — kind, namespace, name, uid —, type, reason, message and source
//! component) at most [`AGGREGATION_WINDOW`] before: it updates the existing Event instead, with
//! `count` one higher and `lastTimestamp` the new event's time (a merge patch of `count`,
//! `lastTimestamp` and `message`). The Event is found by the name the recorder remembers; when
//! it is gone (the patch answers NotFound, say it expired) it is created again, under that name,
//! with the new count. So thirty failed probes in thirty seconds make one Event that `kubectl
//! describe` shows as `(x30 over 30s)`. The recorder remembers at most
//! [`MAX_AGGREGATED_EVENTS`] series; the least recently seen are forgotten first.
//!
//! Events are named as client-go names them, `<object>.<unix nanoseconds in hex>` (followed by
//! the recorder's sequence number); should another recorder have taken the name (two components
//! recording about one object at the same instant of a paused clock), the API generates one.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::api::{Api, Client, ListParams};
//! use orchestra_core::k8s::api::core::v1::{Event, Pod};
//! use orchestra_core::runtime::events::{EventRecorder, EventType};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?; // the default namespaces
//! let recorder = EventRecorder::new(client.clone(), "example-controller");
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "web", "namespace": "default", "uid": "1234"},
//! }))?;
//! recorder.event(&pod, EventType::Normal, "Checked", "the pod looks fine");
//! recorder.flush().await;
//! let events = Api::<Event>::namespaced(client, "default").list(&ListParams::default()).await?;
//! assert_eq!(events.items[0].reason.as_deref(), Some("Checked"));
//! assert_eq!(events.items[0].involved_object.name.as_deref(), Some("web"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::api::{Api, Client, PatchParams, PostParams};
use crate::patch::PatchType;
use crate::resource::Resource;
use crate::status::{StatusError, StatusReason};

/// How many events wait to be created before new ones are dropped (client-go's
/// `maxQueuedEvents`).
pub const MAX_QUEUED_EVENTS: usize = 1000;

/// How long after an event an identical one updates its Event (one more `count`) rather than
/// create another (client-go's aggregation interval, 10 minutes).
pub const AGGREGATION_WINDOW: SignedDuration = SignedDuration::from_secs(600);

/// How many series of identical events the recorder remembers (client-go's
/// `maxLruCacheEntries`).
pub const MAX_AGGREGATED_EVENTS: usize = 4096;

/// The type of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something that may need attention happened.
    Warning,
}

impl EventType {
    /// Kubernetes' name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

enum Message {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// Records events for a component; cheap to clone. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct EventRecorder {
    sender: mpsc::Sender<Message>,
    component: Arc<str>,
    dropped: Arc<AtomicU64>,
    sequence: Arc<AtomicU64>,
    client: Client,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Event(event) => f.debug_tuple("Event").field(&event.reason).finish(),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl EventRecorder {
    /// A recorder whose events name `component` as their source, writing through `client`.
    /// Spawns the task that creates them (it ends when the last clone is dropped), so it must be
    /// called inside a tokio runtime.
    pub fn new(client: Client, component: &str) -> EventRecorder {
        let (sender, mut receiver) = mpsc::channel::<Message>(MAX_QUEUED_EVENTS);
        let mut writer = Writer {
            client: client.clone(),
            seen: BTreeMap::new(),
        };
        tokio::spawn(async move {
            while let Some(message) = receiver.recv().await {
                match message {
                    Message::Event(event) => writer.write(*event).await,
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        EventRecorder {
            sender,
            component: component.into(),
            dropped: Arc::new(AtomicU64::new(0)),
            sequence: Arc::new(AtomicU64::new(0)),
            client,
        }
    }

    /// Records an event about `object`: queues it and returns at once.
    pub fn event<K: Resource>(&self, object: &K, event_type: EventType, reason: &str, message: &str)
    where
        K::DynamicType: Default,
    {
        let event = self.build(object, event_type, reason, message);
        if self
            .sender
            .try_send(Message::Event(Box::new(event)))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event queued before this call has been written (or failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn build<K: Resource>(
        &self,
        object: &K,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Event
    where
        K::DynamicType: Default,
    {
        let dt = K::DynamicType::default();
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta
            .namespace
            .clone()
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let now = self.client.clock().now();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        // client-go names an event `<object>.<unix nanoseconds in hex>`; the sequence number
        // keeps two events of the same nanosecond apart (and when another recorder took the
        // name, the writer lets the API generate one).
        let event_name = format!(
            "{}.{:x}{:04x}",
            name,
            now.as_nanosecond(),
            sequence & 0xffff
        );
        Event {
            metadata: ObjectMeta {
                name: Some(event_name),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&dt).into_owned()),
                kind: Some(K::kind(&dt).into_owned()),
                name: Some(name),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(event_type.as_str().to_owned()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Event::default()
        }
    }
}

/// What makes two events identical (client-go's `getEventKey`, without the fields this
/// recorder never sets).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EventKey {
    component: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    type_: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

impl EventKey {
    fn of(event: &Event) -> EventKey {
        let object = &event.involved_object;
        EventKey {
            component: event
                .source
                .as_ref()
                .and_then(|source| source.component.clone()),
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            uid: object.uid.clone(),
            type_: event.type_.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
        }
    }
}

/// The Event last written for a series of identical events.
#[derive(Debug)]
struct Seen {
    name: String,
    count: i32,
    first_timestamp: Option<Time>,
    last: Timestamp,
}

/// Creates `event`; when its name is taken (another recorder named an event about the same
/// object at the same instant, as happens on a paused clock), under a name the API generates.
async fn create(api: &Api<Event>, event: &Event) -> Result<Event, StatusError> {
    match api.create(&PostParams::default(), event).await {
        Err(error) if error.reason == StatusReason::AlreadyExists => {
            let mut renamed = event.clone();
            renamed.metadata.generate_name =
                renamed.metadata.name.take().map(|name| format!("{name}-"));
            api.create(&PostParams::default(), &renamed).await
        }
        other => other,
    }
}

/// The background half of a recorder: writes events, aggregating identical ones.
struct Writer {
    client: Client,
    seen: BTreeMap<EventKey, Seen>,
}

impl Writer {
    /// Creates `event`, or updates the Event of an identical recent one. An event that cannot
    /// be written is lost, as in client-go: the component's work does not depend on it.
    async fn write(&mut self, mut event: Event) {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
        let key = EventKey::of(&event);
        let now = event
            .last_timestamp
            .as_ref()
            .map_or_else(|| self.client.clock().now(), |time| time.0);
        let previous = self
            .seen
            .get(&key)
            .filter(|seen| now.duration_since(seen.last) <= AGGREGATION_WINDOW)
            .map(|seen| (seen.name.clone(), seen.count, seen.first_timestamp.clone()));
        if let Some((name, count, first_timestamp)) = previous {
            event.metadata.name = Some(name.clone());
            event.first_timestamp = first_timestamp;
            event.count = Some(count.saturating_add(1));
            let patch = json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            });
            let patched = api
                .patch(&name, &PatchParams::new(PatchType::Merge), &patch)
                .await;
            let written = match patched {
                Ok(written) => Ok(written),
                // The Event is gone (expired, deleted): create it again.
                Err(error) if error.is_not_found() => create(&api, &event).await,
                Err(error) => Err(error),
            };
            if let Ok(written) = written {
                self.remember(key, &written, now);
            }
            return;
        }
        if let Ok(written) = create(&api, &event).await {
            self.remember(key, &written, now);
        }
    }

    fn remember(&mut self, key: EventKey, event: &Event, now: Timestamp) {
        self.seen.insert(
            key,
            Seen {
                name: event.metadata.name.clone().unwrap_or_default(),
                count: event.count.unwrap_or(1),
                first_timestamp: event.first_timestamp.clone(),
                last: now,
            },
        );
        if self.seen.len() > MAX_AGGREGATED_EVENTS {
            self.seen
                .retain(|_, seen| now.duration_since(seen.last) <= AGGREGATION_WINDOW);
        }
        if self.seen.len() > MAX_AGGREGATED_EVENTS {
            // Forget the least recently seen quarter (amortizes the sort).
            let mut by_age: Vec<(Timestamp, EventKey)> = self
                .seen
                .iter()
                .map(|(key, seen)| (seen.last, key.clone()))
                .collect();
            by_age.sort_by_key(|(last, _)| *last);
            let excess = self.seen.len() - MAX_AGGREGATED_EVENTS * 3 / 4;
            for (_, key) in by_age.into_iter().take(excess) {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::api::{DeleteParams, ListParams};
    use crate::clock::TokioClock;
    use crate::store::MemoryStore;

    async fn client() -> Client {
        let client = Client::builder(MemoryStore::new())
            .clock(TokioClock::starting_at(Timestamp::UNIX_EPOCH))
            .build();
        client.bootstrap().await.unwrap();
        client
    }

    fn pod(name: &str, uid: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid},
        }))
        .unwrap()
    }

    async fn events(client: &Client) -> Vec<Event> {
        let mut events = Api::<Event>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        events.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        events
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_event_five_times_is_one_event_counted_five_times() {
        let client = client().await;
        let recorder = EventRecorder::new(client.clone(), "kubelet");
        let web = pod("web", "1");
        for _ in 0..5 {
            recorder.event(
                &web,
                EventType::Warning,
                "Unhealthy",
                "Readiness probe failed",
            );
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        recorder.flush().await;
        let events = events(&client).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.count, Some(5));
        assert_eq!(event.reason.as_deref(), Some("Unhealthy"));
        assert_eq!(event.message.as_deref(), Some("Readiness probe failed"));
        let first = event.first_timestamp.as_ref().unwrap().0;
        let last = event.last_timestamp.as_ref().unwrap().0;
        assert_eq!(first, Timestamp::UNIX_EPOCH);
        assert_eq!(last.duration_since(first), SignedDuration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_differ_are_not_aggregated() {
        let client = client().await;
        let recorder = EventRecorder::new(client.clone(), "kubelet");
        let other_recorder = EventRecorder::new(client.clone(), "other");
        let web = pod("web", "1");
        recorder.event(&web, EventType::Normal, "Pulled", "image a");
        recorder.event(&web, EventType::Normal, "Pulled", "image b");
        recorder.event(&web, EventType::Warning, "Pulled", "image a");
        recorder.event(&web, EventType::Normal, "Started", "image a");
        // Another pod of the same name (another uid).
        recorder.event(&pod("web", "2"), EventType::Normal, "Pulled", "image a");
        recorder.event(&pod("db", "3"), EventType::Normal, "Pulled", "image a");
        recorder.flush().await;
        other_recorder.event(&web, EventType::Normal, "Pulled", "image a");
        other_recorder.flush().await;
        let events = events(&client).await;
        assert_eq!(events.len(), 7, "{events:?}");
        assert!(events.iter().all(|event| event.count == Some(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_event_is_created_again_with_the_next_count() {
        let client = client().await;
        let recorder = EventRecorder::new(client.clone(), "kubelet");
        let web = pod("web", "1");
        recorder.event(&web, EventType::Warning, "BackOff", "Back-off restarting");
        recorder.event(&web, EventType::Warning, "BackOff", "Back-off restarting");
        recorder.flush().await;
        let before = events(&client).await;
        assert_eq!(before.len(), 1);
        let name = before[0].metadata.name.clone().unwrap();
        Api::<Event>::namespaced(client.clone(), "default")
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        recorder.event(&web, EventType::Warning, "BackOff", "Back-off restarting");
        recorder.flush().await;
        let after = events(&client).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(after[0].count, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_after_the_window_is_a_new_event() {
        let client = client().await;
        let recorder = EventRecorder::new(client.clone(), "kubelet");
        let web = pod("web", "1");
        recorder.event(&web, EventType::Normal, "Pulled", "image a");
        tokio::time::sleep(Duration::from_secs(599)).await;
        recorder.event(&web, EventType::Normal, "Pulled", "image a");
        tokio::time::sleep(Duration::from_secs(601)).await;
        recorder.event(&web, EventType::Normal, "Pulled", "image a");
        recorder.flush().await;
        let events = events(&client).await;
        let mut counts: Vec<_> = events.iter().map(|event| event.count).collect();
        counts.sort();
        assert_eq!(counts, vec![Some(1), Some(2)], "{events:?}");
    }
}
