//! The `Controller`: no reconcile before the caches are synced, reconciles follow changes of the
//! object and of the objects it owns, one worker per key, requeue and back-off.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use orchestra_core::api::{Api, Client, PostParams};
use orchestra_core::resource::ResourceExt;
use orchestra_core::runtime::Action;
use orchestra_core::runtime::controller::Controller;
use orchestra_core::runtime::watcher::WatcherConfig;
use orchestra_core::store::MemoryStore;

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

struct Context {
    reconciled: Mutex<BTreeMap<String, usize>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    secrets: Api<Secret>,
}

async fn reconcile(object: Arc<ConfigMap>, context: Arc<Context>) -> Result<Action, String> {
    let now = context.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    context.most_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    *context
        .reconciled
        .lock()
        .unwrap()
        .entry(object.name_any())
        .or_default() += 1;
    // The reconcile's effect: a secret owned by the config map.
    let name = object.name_any();
    if context
        .secrets
        .get_opt(&name)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.clone(),
            uid: object.uid().unwrap_or_default().to_owned(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        context
            .secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| e.to_string())?;
    }
    context.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(Action::await_change())
}

#[tokio::test(start_paused = true)]
async fn controllers_reconcile_changes_of_their_objects_and_of_what_they_own() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for i in 0..8 {
        config_maps
            .create(&PostParams::default(), &config_map(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let context = Arc::new(Context {
        reconciled: Mutex::new(BTreeMap::new()),
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        secrets: secrets.clone(),
    });
    let controller = Controller::new(config_maps.clone(), WatcherConfig::default())
        .owns(secrets.clone(), WatcherConfig::default())
        .concurrency(3);
    let cache = controller.store();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller.run(reconcile, Arc::clone(&context), async move {
        let _ = stopped.await;
    }));

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cache.is_ready());
    assert_eq!(
        secrets.list(&Default::default()).await.unwrap().items.len(),
        8
    );
    assert!(
        context.most_in_flight.load(Ordering::SeqCst) <= 3,
        "bounded concurrency"
    );

    // A change to an owned object reconciles its owner again.
    let before = context.reconciled.lock().unwrap()["cm-3"];
    let mut secret = secrets.get("cm-3").await.unwrap();
    secret.labels_mut().insert("touched".into(), "yes".into());
    secrets
        .replace("cm-3", &PostParams::default(), &secret)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(context.reconciled.lock().unwrap()["cm-3"] > before);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_with_back_off_and_requeues_come_back() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    config_maps
        .create(&PostParams::default(), &config_map("flaky"))
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map("periodic"))
        .await
        .unwrap();
    let attempts: Arc<Mutex<BTreeMap<String, Vec<tokio::time::Instant>>>> = Arc::default();
    let controller = Controller::new(config_maps, WatcherConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = Arc::clone(&attempts);
    let running = tokio::spawn(controller.run(
        move |object: Arc<ConfigMap>, _: Arc<()>| {
            let seen = Arc::clone(&seen);
            async move {
                let name = object.name_any();
                let count = {
                    let mut seen = seen.lock().unwrap();
                    let times = seen.entry(name.clone()).or_default();
                    times.push(tokio::time::Instant::now());
                    times.len()
                };
                match name.as_str() {
                    "flaky" if count < 4 => Err("not yet"),
                    "periodic" => Ok(Action::requeue(Duration::from_secs(60))),
                    _ => Ok(Action::await_change()),
                }
            }
        },
        Arc::new(()),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_secs(185)).await;
    let _ = stop.send(());
    running.await.unwrap();
    let attempts = attempts.lock().unwrap();
    let flaky = &attempts["flaky"];
    assert_eq!(flaky.len(), 4, "three failures, then success, then quiet");
    let gaps: Vec<Duration> = flaky.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0]),
        "back-off grows: {gaps:?}"
    );
    let periodic = &attempts["periodic"];
    assert_eq!(periodic.len(), 4, "at 0, 60, 120 and 180 seconds");
}
