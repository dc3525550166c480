//! Optimistic concurrency under contention: 16 clients read, modify and write one object at the
//! same time; every lost race is a 409 Conflict and no update is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, PostParams};
use orchestra_core::status::StatusReason;
use orchestra_core::store::MemoryStore;

const CLIENTS: usize = 16;
const INCREMENTS: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_read_modify_write_clients_lose_no_update() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let counter = ConfigMap {
        metadata: ObjectMeta {
            name: Some("counter".into()),
            ..ObjectMeta::default()
        },
        data: Some([("value".to_owned(), "0".to_owned())].into()),
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &counter).await.unwrap();

    let successes = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        let successes = Arc::clone(&successes);
        let conflicts = Arc::clone(&conflicts);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < INCREMENTS {
                let mut current = api.get("counter").await.unwrap();
                let data = current.data.get_or_insert_with(Default::default);
                let value: usize = data["value"].parse().unwrap();
                data.insert("value".into(), (value + 1).to_string());
                match api
                    .replace("counter", &PostParams::default(), &current)
                    .await
                {
                    Ok(_) => {
                        done += 1;
                        successes.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => {
                        assert_eq!(error.reason, StatusReason::Conflict, "{error}");
                        assert_eq!(error.code, 409);
                        conflicts.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let final_value: usize = api.get("counter").await.unwrap().data.unwrap()["value"]
        .parse()
        .unwrap();
    assert_eq!(final_value, successes.load(Ordering::SeqCst));
    assert_eq!(final_value, CLIENTS * INCREMENTS);
    assert!(
        conflicts.load(Ordering::SeqCst) > 0,
        "16 concurrent writers must have raced at least once"
    );
}
