//! The watcher and reflector: a cache that converges on the store, through watch failures and
//! compactions (410 Gone makes the watcher list again).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, DeleteParams, ListParams, PostParams};
use orchestra_core::resource::ResourceExt;
use orchestra_core::runtime::reflector::{self, Reader};
use orchestra_core::runtime::watcher::{WatcherConfig, WatcherEvent, watcher};
use orchestra_core::store::MemoryStore;

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([("value".to_owned(), value.to_owned())].into()),
        ..ConfigMap::default()
    }
}

async fn store_state(api: &Api<ConfigMap>) -> BTreeMap<String, String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| (cm.name_any(), cm.data.unwrap()["value"].clone()))
        .collect()
}

fn cache_state(reader: &Reader<ConfigMap>) -> BTreeMap<String, String> {
    reader
        .state()
        .iter()
        .map(|cm| (cm.name_any(), cm.data.as_ref().unwrap()["value"].clone()))
        .collect()
}

#[tokio::test]
async fn the_watcher_lists_in_pages_then_watches() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..12 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i:02}"), "0"),
        )
        .await
        .unwrap();
    }
    let config = WatcherConfig {
        page_size: 5,
        ..WatcherConfig::default()
    };
    let mut events = Box::pin(watcher(api.clone(), config));
    assert_eq!(events.next().await.unwrap().unwrap(), WatcherEvent::Init);
    let mut initial = 0;
    loop {
        match events.next().await.unwrap().unwrap() {
            WatcherEvent::InitApply(_) => initial += 1,
            WatcherEvent::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, 12);
    api.create(&PostParams::default(), &config_map("new", "1"))
        .await
        .unwrap();
    match events.next().await.unwrap().unwrap() {
        WatcherEvent::Apply(object) => assert_eq!(object.name_any(), "new"),
        other => panic!("unexpected {other:?}"),
    }
    api.delete("cm-00", &DeleteParams::default()).await.unwrap();
    match events.next().await.unwrap().unwrap() {
        WatcherEvent::Delete(object) => assert_eq!(object.name_any(), "cm-00"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_relisting_informer_recovers_from_compaction() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}"), "0"))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let mut events = Box::pin(reflector::reflector(
        writer,
        watcher(api.clone(), WatcherConfig::default()),
    ));
    // The first list.
    while !matches!(events.next().await, Some(Ok(WatcherEvent::InitDone))) {}
    assert!(reader.is_ready());
    assert_eq!(cache_state(&reader), store_state(&api).await);

    // While the informer is not reading, the store changes and forgets its history.
    for i in 0..5 {
        let mut object = api.get(&format!("cm-{i}")).await.unwrap();
        object.data = Some([("value".to_owned(), "1".to_owned())].into());
        api.replace(&format!("cm-{i}"), &PostParams::default(), &object)
            .await
            .unwrap();
    }
    api.delete("cm-0", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &config_map("late", "2"))
        .await
        .unwrap();
    let revision = client.store().unwrap().current_revision().await.unwrap();
    client.store().unwrap().compact(revision).await.unwrap();

    // The watch is gone: the informer lists again and converges.
    let mut relisted = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the informer makes progress")
            .unwrap();
        match event {
            Ok(WatcherEvent::Init) => relisted = true,
            Ok(WatcherEvent::InitDone) => break,
            _ => {}
        }
    }
    assert!(relisted, "410 Gone leads to a new list");
    assert_eq!(cache_state(&reader), store_state(&api).await);
    assert!(!cache_state(&reader).contains_key("cm-0"));
}
