//! Watch events, as Kubernetes streams them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

/// One event of a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// An object appeared (was created, or came to match the watch's selectors).
    Added(K),
    /// An object changed.
    Modified(K),
    /// An object went away (was deleted, or stopped matching the watch's selectors); the object
    /// as it last was, with the resource version of its removal.
    Deleted(K),
    /// Every change up to this resource version was delivered (only when asked for).
    Bookmark(String),
    /// The watch failed (410 Gone when its resource version was compacted) and ends.
    Error(Box<Status>),
}

impl<K> WatchEvent<K> {
    /// The event's type as Kubernetes writes it (`ADDED`, `MODIFIED`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        }
    }

    /// The event with its object turned into another type.
    pub fn try_map<T, E>(self, f: impl FnOnce(K) -> Result<T, E>) -> Result<WatchEvent<T>, E> {
        Ok(match self {
            WatchEvent::Added(object) => WatchEvent::Added(f(object)?),
            WatchEvent::Modified(object) => WatchEvent::Modified(f(object)?),
            WatchEvent::Deleted(object) => WatchEvent::Deleted(f(object)?),
            WatchEvent::Bookmark(version) => WatchEvent::Bookmark(version),
            WatchEvent::Error(status) => WatchEvent::Error(status),
        })
    }
}
