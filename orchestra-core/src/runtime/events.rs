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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::{mpsc, oneshot};

use crate::api::{Api, Client, PostParams};
use crate::resource::Resource;

/// How many events wait to be created before new ones are dropped (client-go's
/// `maxQueuedEvents`).
pub const MAX_QUEUED_EVENTS: usize = 1000;

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
        let writer = client.clone();
        tokio::spawn(async move {
            while let Some(message) = receiver.recv().await {
                match message {
                    Message::Event(event) => {
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        // An event that cannot be written is lost, as in client-go: the
                        // component's work does not depend on it.
                        let _ = Api::<Event>::namespaced(writer.clone(), &namespace)
                            .create(&PostParams::default(), &event)
                            .await;
                    }
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
        // keeps two events of the same nanosecond apart.
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
