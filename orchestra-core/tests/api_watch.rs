//! Watches through the typed API: many watchers see identical, gap-free events; a watch from a
//! compacted resource version gets 410 Gone; bookmarks arrive when asked for.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, DeleteParams, PostParams, WatchEvent, WatchParams};
use orchestra_core::resource::ResourceExt;
use orchestra_core::store::MemoryStore;

const WATCHERS: usize = 1_000;
const WRITES: usize = 60;

fn config_map(name: &str, value: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([("value".to_owned(), value.to_string())].into()),
        ..ConfigMap::default()
    }
}

/// What a watcher saw: (event type, name, resource version).
type Seen = Vec<(&'static str, String, i64)>;

fn describe(event: &WatchEvent<ConfigMap>) -> (&'static str, String, i64) {
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => (
            event.type_name(),
            o.name_any(),
            o.resource_version().unwrap().parse().unwrap(),
        ),
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_see_identical_gap_free_events() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = client.store().unwrap().current_revision().await.unwrap();

    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let events = api
            .watch(&WatchParams::default(), &start.to_string())
            .await
            .unwrap();
        watchers.push(tokio::spawn(async move {
            events
                .take(WRITES)
                .map(|event| describe(&event))
                .collect::<Seen>()
                .await
        }));
    }
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                let name = format!("cm-{}", i % 7);
                match api.get_opt(&name).await.unwrap() {
                    Some(_) if i % 5 == 4 => {
                        api.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                    Some(mut existing) => {
                        existing.data = Some([("value".to_owned(), i.to_string())].into());
                        api.replace(&name, &PostParams::default(), &existing)
                            .await
                            .unwrap();
                    }
                    None => {
                        api.create(&PostParams::default(), &config_map(&name, i))
                            .await
                            .unwrap();
                    }
                }
            }
        })
    };
    writer.await.unwrap();
    let mut first: Option<Seen> = None;
    for watcher in watchers {
        let seen = tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.len(), WRITES);
        // Gap-free: every write is one revision, so the versions are consecutive.
        for pair in seen.windows(2) {
            assert_eq!(pair[1].2, pair[0].2 + 1, "a gap or a duplicate in {seen:?}");
        }
        assert_eq!(seen[0].2, start + 1);
        match &first {
            None => first = Some(seen),
            Some(first) => assert_eq!(&seen, first, "watchers disagree"),
        }
    }
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_is_gone() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &config_map("a", 0))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("b", 0))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("c", 0))
        .await
        .unwrap();
    // History before the current revision is forgotten: the change right after `first` (the
    // creation of b) is gone.
    let current = client.store().unwrap().current_revision().await.unwrap();
    client.store().unwrap().compact(current).await.unwrap();
    let mut events = api
        .watch(&WatchParams::default(), first.resource_version().unwrap())
        .await
        .unwrap();
    match events.next().await {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, Some(410));
            assert_eq!(status.reason.as_deref(), Some("Expired"));
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert!(events.next().await.is_none(), "the watch ends after Gone");
}

#[tokio::test]
async fn a_watch_from_the_start_lists_first() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &config_map("a", 0))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("b", 0))
        .await
        .unwrap();
    let mut events = api.watch(&WatchParams::default(), "").await.unwrap();
    let first: Vec<(&str, String)> = events
        .by_ref()
        .take(2)
        .map(|e| {
            let (kind, name, _) = describe(&e);
            (kind, name)
        })
        .collect()
        .await;
    assert_eq!(
        first,
        [("ADDED", "a".to_owned()), ("ADDED", "b".to_owned())]
    );
    api.create(&PostParams::default(), &config_map("c", 0))
        .await
        .unwrap();
    assert_eq!(describe(&events.next().await.unwrap()).1, "c");
}

#[tokio::test(start_paused = true)]
async fn idle_watches_get_bookmarks() {
    let client = Client::builder(MemoryStore::new())
        .bookmark_interval(Duration::from_secs(5))
        .build();
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("a", 0))
        .await
        .unwrap();
    let mut events = api
        .watch(
            &WatchParams::default().bookmarks(),
            created.resource_version().unwrap(),
        )
        .await
        .unwrap();
    match events.next().await {
        Some(WatchEvent::Bookmark(version)) => {
            assert!(
                version.parse::<i64>().unwrap()
                    >= created.resource_version().unwrap().parse().unwrap()
            );
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}
