//! Watches over HTTP: a stream of JSON lines, one per event, as Kubernetes sends them.
//!
//! Each event is a line `{"type":"ADDED","object":{...}}`; a bookmark carries an object with
//! only the kind and the resource version; a failure (410 Gone when the resource version was
//! compacted) is an `ERROR` event with a `Status`, after which the stream ends. A watch with
//! `timeoutSeconds` ends cleanly when the time is up, and the client starts a new one.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use orchestra_core::api::WatchEvent;
use orchestra_core::resource::{ApiResource, DynamicObject};
use serde_json::{Value, json};

/// The events of a watch's initial state (`sendInitialEvents=true`): one `ADDED` per object,
/// then the bookmark marking their end (annotated `k8s.io/initial-events-end`) at the
/// bookmark's resource version, which is the last of `initial`.
fn initial_lines(
    resource: &ApiResource,
    initial: Vec<WatchEvent<DynamicObject>>,
    render: Option<&Render>,
) -> Vec<Bytes> {
    initial
        .into_iter()
        .map(|event| match event {
            WatchEvent::Bookmark(version) => {
                let object = json!({
                    "kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {
                        "resourceVersion": version,
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                });
                let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object}))
                    .unwrap_or_default();
                line.push(b'\n');
                Bytes::from(line)
            }
            other => Bytes::from(event_line(resource, &other, render)),
        })
        .collect()
}

/// How a watch writes the objects of its events: as they are, or as something else (the `Table`
/// rows of `kubectl get --watch`).
pub type Render = Box<dyn Fn(&DynamicObject) -> Value + Send + Sync>;

/// One event as the line Kubernetes writes for it, its object written by `render` (as it is
/// when `None`).
pub fn event_line(
    resource: &ApiResource,
    event: &WatchEvent<DynamicObject>,
    render: Option<&Render>,
) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Line<'a, T: serde::Serialize> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a T,
    }
    let kind = event.type_name();
    let encoded = match event {
        WatchEvent::Added(object) | WatchEvent::Modified(object) | WatchEvent::Deleted(object) => {
            match render {
                Some(render) => serde_json::to_vec(&Line {
                    kind,
                    object: &render(object),
                }),
                // Straight from the object, without a copy into a `Value`.
                None => serde_json::to_vec(&Line { kind, object }),
            }
        }
        WatchEvent::Bookmark(version) => serde_json::to_vec(&Line {
            kind,
            object: &json!({
                "kind": resource.kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": version},
            }),
        }),
        WatchEvent::Error(status) => {
            let mut value = serde_json::to_value(status.as_ref()).unwrap_or(Value::Null);
            value["kind"] = json!("Status");
            value["apiVersion"] = json!("v1");
            serde_json::to_vec(&Line {
                kind,
                object: &value,
            })
        }
    };
    let mut line = encoded.unwrap_or_default();
    line.push(b'\n');
    line
}

/// The streamed response of a watch, ending after `timeout` when one is given, its objects
/// written by `render` when one is given.
pub fn watch_response(
    resource: &ApiResource,
    events: BoxStream<'static, WatchEvent<DynamicObject>>,
    timeout: Option<Duration>,
    render: Option<Render>,
    initial: Vec<WatchEvent<DynamicObject>>,
) -> Response {
    let resource = resource.clone();
    let initial = initial_lines(&resource, initial, render.as_ref());
    let changes =
        events.map(move |event| Bytes::from(event_line(&resource, &event, render.as_ref())));
    let lines = futures_util::stream::iter(initial)
        .chain(changes)
        .map(Ok::<_, std::convert::Infallible>);
    let body = match timeout {
        Some(timeout) => Body::from_stream(lines.take_until(tokio::time::sleep(timeout))),
        None => Body::from_stream(lines),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}
