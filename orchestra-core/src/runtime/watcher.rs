//! The watcher: a stream of everything that happens to the objects of one kind, that survives
//! watch failures by listing again.
//!
//! [`watcher`] lists the objects (in pages), reports them as one initial batch
//! ([`WatcherEvent::Init`], [`WatcherEvent::InitApply`] for each, [`WatcherEvent::InitDone`]), then
//! watches from the list's resource version and reports every change ([`WatcherEvent::Apply`],
//! [`WatcherEvent::Delete`]). When the watch ends, it resumes from the last resource version it
//! saw (bookmarks keep that version fresh); when the version is gone (410, after a compaction) it
//! starts over with a new list, so a consumer that rebuilds its state on `Init` always converges
//! on the store's state. Failed requests are retried with exponential back-off and reported as
//! [`WatcherError`] items; the stream itself never ends.
//!
//! The states follow kube-rs's watcher: `Empty` (list next) → `Initializing` (listing pages) →
//! `Watching` (a watch is open) or `Resuming` (open one from the last version).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{Api, ListParams, WatchEvent, WatchParams};
use crate::resource::Resource;
use crate::status::{StatusError, StatusReason};

/// What the watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub enum WatcherEvent<K> {
    /// A (re-)list starts: what follows until [`WatcherEvent::InitDone`] is the whole state.
    Init,
    /// An object of the initial list.
    InitApply(K),
    /// The initial list is complete; changes follow.
    InitDone,
    /// An object was created or changed.
    Apply(K),
    /// An object was deleted (its last state).
    Delete(K),
}

/// A request of the watcher failed; it retries after a back-off.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WatcherError {
    /// The initial list failed.
    #[error("list failed: {0}")]
    List(StatusError),
    /// Opening the watch failed.
    #[error("watch failed: {0}")]
    Watch(StatusError),
    /// The watch reported an error other than 410 Gone.
    #[error("watch error: {0}")]
    WatchEvent(String),
}

/// How the watcher reads.
#[derive(Clone, Debug)]
pub struct WatcherConfig {
    /// Only objects whose labels match.
    pub label_selector: Option<String>,
    /// Only objects whose fields match.
    pub field_selector: Option<String>,
    /// Objects per list page.
    pub page_size: u32,
    /// Ask for bookmarks (keeps the resume version fresh, so fewer re-lists).
    pub bookmarks: bool,
    /// First back-off after a failure; it doubles up to [`WatcherConfig::max_backoff`].
    pub initial_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
}

impl Default for WatcherConfig {
    fn default() -> WatcherConfig {
        WatcherConfig {
            label_selector: None,
            field_selector: None,
            page_size: 500,
            bookmarks: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl WatcherConfig {
    /// Only objects whose labels match `selector`.
    #[must_use]
    pub fn labels(mut self, selector: &str) -> WatcherConfig {
        self.label_selector = Some(selector.to_owned());
        self
    }

    /// Only objects whose fields match `selector`.
    #[must_use]
    pub fn fields(mut self, selector: &str) -> WatcherConfig {
        self.field_selector = Some(selector.to_owned());
        self
    }
}

enum Phase<K> {
    Empty,
    Initializing {
        continue_token: Option<String>,
        version: Option<String>,
    },
    Resuming {
        version: String,
    },
    Watching {
        version: String,
        events: BoxStream<'static, WatchEvent<K>>,
    },
}

struct State<K: Resource> {
    api: Api<K>,
    config: WatcherConfig,
    phase: Phase<K>,
    pending: VecDeque<Result<WatcherEvent<K>, WatcherError>>,
    backoff: Duration,
    failed: bool,
}

/// Watches the objects of `api`'s kind (in its namespace, or all): see the
/// [module documentation](self).
pub fn watcher<K>(
    api: Api<K>,
    config: WatcherConfig,
) -> impl Stream<Item = Result<WatcherEvent<K>, WatcherError>> + Send + 'static
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Send + Sync,
{
    let state = State {
        backoff: config.initial_backoff,
        api,
        config,
        phase: Phase::Empty,
        pending: VecDeque::new(),
        failed: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let item = state.step().await;
        Some((item, state))
    })
}

impl<K> State<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn step(&mut self) -> Result<WatcherEvent<K>, WatcherError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return item;
            }
            if self.failed {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(self.config.max_backoff);
                self.failed = false;
            }
            match std::mem::replace(&mut self.phase, Phase::Empty) {
                Phase::Empty => {
                    self.phase = Phase::Initializing {
                        continue_token: None,
                        version: None,
                    };
                    return Ok(WatcherEvent::Init);
                }
                Phase::Initializing {
                    continue_token,
                    version,
                } => {
                    let mut params = ListParams {
                        label_selector: self.config.label_selector.clone(),
                        field_selector: self.config.field_selector.clone(),
                        limit: Some(self.config.page_size),
                        ..ListParams::default()
                    };
                    params.continue_token.clone_from(&continue_token);
                    match self.api.list(&params).await {
                        Ok(list) => {
                            let next = list.continue_token().map(str::to_owned);
                            let list_version =
                                list.resource_version().map(str::to_owned).or(version);
                            self.pending.extend(
                                list.items
                                    .into_iter()
                                    .map(|object| Ok(WatcherEvent::InitApply(object))),
                            );
                            match next {
                                Some(token) => {
                                    self.phase = Phase::Initializing {
                                        continue_token: Some(token),
                                        version: list_version,
                                    };
                                }
                                None => {
                                    self.backoff = self.config.initial_backoff;
                                    self.pending.push_back(Ok(WatcherEvent::InitDone));
                                    self.phase = Phase::Resuming {
                                        version: list_version.unwrap_or_default(),
                                    };
                                }
                            }
                        }
                        Err(error) => {
                            // A page whose snapshot was compacted: start the list over.
                            self.phase = if error.reason == StatusReason::Expired {
                                Phase::Empty
                            } else {
                                Phase::Initializing {
                                    continue_token,
                                    version,
                                }
                            };
                            self.failed = true;
                            return Err(WatcherError::List(error));
                        }
                    }
                }
                Phase::Resuming { version } => {
                    let params = WatchParams {
                        label_selector: self.config.label_selector.clone(),
                        field_selector: self.config.field_selector.clone(),
                        bookmarks: self.config.bookmarks,
                        timeout: None,
                    };
                    match self.api.watch(&params, &version).await {
                        Ok(events) => {
                            self.phase = Phase::Watching { version, events };
                        }
                        Err(error) => {
                            self.phase = if error.reason == StatusReason::Expired {
                                Phase::Empty
                            } else {
                                Phase::Resuming { version }
                            };
                            self.failed = true;
                            return Err(WatcherError::Watch(error));
                        }
                    }
                }
                Phase::Watching {
                    mut version,
                    mut events,
                } => match events.next().await {
                    None => {
                        self.phase = Phase::Resuming { version };
                    }
                    Some(event) => {
                        let item = match event {
                            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                                if let Some(v) = object.meta().resource_version.clone() {
                                    version = v;
                                }
                                Some(Ok(WatcherEvent::Apply(object)))
                            }
                            WatchEvent::Deleted(object) => {
                                if let Some(v) = object.meta().resource_version.clone() {
                                    version = v;
                                }
                                Some(Ok(WatcherEvent::Delete(object)))
                            }
                            WatchEvent::Bookmark(v) => {
                                version = v;
                                None
                            }
                            WatchEvent::Error(status) => {
                                if status.code == Some(410) {
                                    self.phase = Phase::Empty;
                                    continue;
                                }
                                self.phase = Phase::Resuming { version };
                                self.failed = true;
                                return Err(WatcherError::WatchEvent(
                                    status.message.unwrap_or_default(),
                                ));
                            }
                        };
                        self.backoff = self.config.initial_backoff;
                        self.phase = Phase::Watching { version, events };
                        if let Some(item) = item {
                            return item;
                        }
                    }
                },
            }
        }
    }
}

/// The objects of a watcher stream, forgetting the lifecycle events: every applied or deleted
/// object (initial ones included).
pub fn touched_objects<K, S>(stream: S) -> impl Stream<Item = Result<K, WatcherError>>
where
    S: Stream<Item = Result<WatcherEvent<K>, WatcherError>>,
{
    stream.filter_map(|event| async move {
        match event {
            Ok(
                WatcherEvent::InitApply(object)
                | WatcherEvent::Apply(object)
                | WatcherEvent::Delete(object),
            ) => Some(Ok(object)),
            Ok(WatcherEvent::Init | WatcherEvent::InitDone) => None,
            Err(error) => Some(Err(error)),
        }
    })
}
