//! kube-rs (the `kube` crate), the client Rust operators are written with, against a freshly
//! started `orchestra up`: a `kube::runtime::Controller` of ConfigMaps reconciles each labelled
//! ConfigMap by server-side applying an owned Secret (with a controller ownerReference) and merge
//! patching a `reconciled` annotation onto the ConfigMap; its error policy requeues a reconcile
//! that fails. The test creates three ConfigMaps through kube's `Api`, sees each reconciled, lists
//! them by label, watches them with `Api::watch`, changes one and sees it reconciled again, deletes
//! one and sees the garbage collector remove its Secret, and checks the controller settles (no
//! reconcile loop from no-op writes).
//!
//! The controller's watcher runs in kube's default mode: a paged list (`limit=500`), then a watch
//! from the list's resourceVersion with bookmarks (`allowWatchBookmarks=true`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

use support::StopProcesses;
use support::up::{Up, free_port};

const POD_RANGE: &str = "127.98.0.0/16";
const NODE: &str = "kube-rs-node";
const NAMESPACE: &str = "kube-rs";
/// The label the controller selects its ConfigMaps by.
const MANAGED: &str = "kube-rs.test/managed";
/// The annotation the controller writes: the `value` it last reconciled.
const RECONCILED: &str = "kube-rs.test/reconciled";
/// The field manager of the controller's writes.
const MANAGER: &str = "kube-rs-test";
/// How long the test waits for the controller (and the garbage collector).
const PATIENCE: Duration = Duration::from_secs(30);

/// What the reconciler shares with the test.
struct Context {
    client: Client,
    /// Names whose next reconcile fails (once), to exercise the error policy.
    fail_once: Mutex<BTreeSet<String>>,
    /// Reconciles per ConfigMap name.
    reconciles: Mutex<BTreeMap<String, u32>>,
    /// Reconciler errors seen by the error policy.
    errors: Mutex<Vec<String>>,
    /// Errors the controller's stream yielded (watcher or reconciler).
    stream_errors: Mutex<Vec<String>>,
}

#[derive(Debug)]
enum ReconcileError {
    Kube(kube::Error),
    Injected(String),
    NoUid(String),
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileError::Kube(error) => write!(f, "kube: {error:?}"),
            ReconcileError::Injected(name) => write!(f, "injected failure of {name}"),
            ReconcileError::NoUid(name) => write!(f, "{name} has no uid"),
        }
    }
}

impl std::error::Error for ReconcileError {}

impl From<kube::Error> for ReconcileError {
    fn from(error: kube::Error) -> Self {
        ReconcileError::Kube(error)
    }
}

/// Applies the Secret `<name>-owned` (owned by the ConfigMap, holding its `value`) and annotates
/// the ConfigMap with the `value` it reconciled.
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = cm.name_any();
    *ctx.reconciles
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default() += 1;
    if ctx.fail_once.lock().unwrap().remove(&name) {
        return Err(ReconcileError::Injected(name));
    }
    if cm.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cm.namespace().unwrap_or_else(|| NAMESPACE.to_owned());
    let value = cm
        .data
        .as_ref()
        .and_then(|data| data.get("value"))
        .cloned()
        .unwrap_or_default();
    let owner = cm
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::NoUid(name.clone()))?;
    let secret_name = format!("{name}-owned");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([(
                "kube-rs.test/owner".to_owned(),
                name.clone(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "value".to_owned(),
            ByteString(value.clone().into_bytes()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    if cm.annotations().get(RECONCILED) != Some(&value) {
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {RECONCILED: value}}})),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Requeues a failed reconcile soon.
fn error_policy(_cm: Arc<ConfigMap>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.errors.lock().unwrap().push(error.to_string());
    Action::requeue(Duration::from_millis(200))
}

fn config_map(name: &str, value: &str, managed: bool) -> ConfigMap {
    let labels = if managed {
        BTreeMap::from([(MANAGED.to_owned(), "true".to_owned())])
    } else {
        BTreeMap::from([("kube-rs.test/other".to_owned(), "true".to_owned())])
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("value".to_owned(), value.to_owned())])),
        ..ConfigMap::default()
    }
}

/// Polls `check` until it gives a value (at most [`PATIENCE`]); on timeout, panics with `what`
/// and the controller's errors.
async fn until<T, F, Fut>(ctx: &Context, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}; reconciles: {:?}; reconcile errors: {:#?}; controller \
             stream errors: {:#?}",
            ctx.reconciles.lock().unwrap(),
            ctx.errors.lock().unwrap(),
            ctx.stream_errors.lock().unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn secret_value(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get("value")?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Waits until the ConfigMap `name` carries `value` in its annotation and its Secret holds it,
/// owned by the ConfigMap.
async fn until_reconciled(ctx: &Context, name: &str, value: &str) {
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), NAMESPACE);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), NAMESPACE);
    until(ctx, &format!("{name} reconciled with {value:?}"), || {
        let (config_maps, secrets) = (config_maps.clone(), secrets.clone());
        async move {
            let cm = config_maps.get_opt(name).await.unwrap()?;
            if cm.annotations().get(RECONCILED).map(String::as_str) != Some(value) {
                return None;
            }
            let secret = secrets.get_opt(&format!("{name}-owned")).await.unwrap()?;
            let owners = secret.metadata.owner_references.clone().unwrap_or_default();
            let owned = owners.iter().any(|owner| {
                Some(&owner.uid) == cm.metadata.uid.as_ref()
                    && owner.kind == "ConfigMap"
                    && owner.controller == Some(true)
            });
            (owned && secret_value(&secret).as_deref() == Some(value)).then_some(())
        }
    })
    .await;
}

#[test]
fn kube_rs_controller_against_orchestra_up() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _cleanup = StopProcesses(data_dir.clone());
    let up = Up::start(&data_dir, free_port(), NODE, POD_RANGE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(drive(&up));
    drop(runtime);
    up.stop();
}

async fn drive(up: &Up) {
    // A client from the kubeconfig `orchestra up` wrote, as a kube-rs program builds one.
    let kubeconfig = Kubeconfig::read_from(&up.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    eprintln!("server version: {}.{}", version.major, version.minor);

    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE);
    let secrets = Api::<Secret>::namespaced(client.clone(), NAMESPACE);
    let ctx = Arc::new(Context {
        client: client.clone(),
        fail_once: Mutex::new(BTreeSet::from(["cm-b".to_owned()])),
        reconciles: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(Vec::new()),
        stream_errors: Mutex::new(Vec::new()),
    });

    // The controller: the labelled ConfigMaps, and the Secrets they own.
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = Controller::new(
        config_maps.clone(),
        watcher::Config::default().labels(&format!("{MANAGED}=true")),
    )
    .owns(secrets.clone(), watcher::Config::default())
    .graceful_shutdown_on(async {
        let _ = stopped.await;
    });
    let store = controller.store();
    let controller = tokio::spawn({
        let ctx = ctx.clone();
        controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(move |result| {
                if let Err(error) = result {
                    eprintln!("controller: {error:?}");
                    ctx.stream_errors.lock().unwrap().push(format!("{error:?}"));
                }
                futures_util::future::ready(())
            })
    });

    // Three managed ConfigMaps (cm-b's first reconcile fails), and one the controller ignores.
    for (name, value) in [("cm-a", "a1"), ("cm-b", "b1"), ("cm-c", "c1")] {
        config_maps
            .create(&PostParams::default(), &config_map(name, value, true))
            .await
            .unwrap();
    }
    config_maps
        .create(&PostParams::default(), &config_map("cm-other", "x", false))
        .await
        .unwrap();
    for (name, value) in [("cm-a", "a1"), ("cm-b", "b1"), ("cm-c", "c1")] {
        until_reconciled(&ctx, name, value).await;
    }
    let errors = ctx.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|error| error.contains("injected failure of cm-b")),
        "the error policy never saw cm-b's failure: {errors:?}"
    );
    assert!(ctx.reconciles.lock().unwrap()["cm-b"] >= 2);

    // The controller's reflector holds the three, and nothing else.
    let mut cached: Vec<String> = store.state().iter().map(|cm| cm.name_any()).collect();
    cached.sort();
    assert_eq!(cached, ["cm-a", "cm-b", "cm-c"]);

    // A label-selected list finds the three; the unlabelled one is left alone.
    let managed = config_maps
        .list(&ListParams::default().labels(&format!("{MANAGED}=true")))
        .await
        .unwrap();
    let mut names: Vec<String> = managed.items.iter().map(|cm| cm.name_any()).collect();
    names.sort();
    assert_eq!(names, ["cm-a", "cm-b", "cm-c"]);
    let other = config_maps.get("cm-other").await.unwrap();
    assert!(!other.annotations().contains_key(RECONCILED), "{other:?}");
    assert!(secrets.get_opt("cm-other-owned").await.unwrap().is_none());
    let owned = secrets
        .list(&ListParams::default().labels("kube-rs.test/owner"))
        .await
        .unwrap();
    assert_eq!(owned.items.len(), 3, "{:?}", owned.items);

    // The Secrets' fields are the controller's (server-side apply's managedFields).
    let secret = secrets.get("cm-a-owned").await.unwrap();
    let managers: Vec<_> = secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| (entry.manager.clone(), entry.operation.clone()))
        .collect();
    assert!(
        managers.contains(&(Some(MANAGER.to_owned()), Some("Apply".to_owned()))),
        "{managers:?}"
    );

    // A watch of the managed ConfigMaps from the list's resourceVersion.
    let from = managed
        .metadata
        .resource_version
        .clone()
        .expect("the list has a resourceVersion");
    let mut events = Box::pin(
        config_maps
            .watch(
                &WatchParams::default()
                    .labels(&format!("{MANAGED}=true"))
                    .timeout(60),
                &from,
            )
            .await
            .unwrap(),
    );

    // Changed, cm-a is reconciled again; the watch sees the change.
    config_maps
        .patch(
            "cm-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "a2"}})),
        )
        .await
        .unwrap();
    until_reconciled(&ctx, "cm-a", "a2").await;
    let seen = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            match event.unwrap() {
                WatchEvent::Modified(cm)
                    if cm.name_any() == "cm-a"
                        && cm.data.as_ref().and_then(|data| data.get("value"))
                            == Some(&"a2".to_owned()) =>
                {
                    return true;
                }
                WatchEvent::Error(status) => panic!("watch error: {status:?}"),
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the watch never showed cm-a's change");

    // Deleted, cm-c's Secret goes with it (the garbage collector follows the ownerReference).
    config_maps
        .delete("cm-c", &DeleteParams::default())
        .await
        .unwrap();
    until(&ctx, "cm-c-owned collected", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("cm-c-owned")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let deleted = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            match event.unwrap() {
                WatchEvent::Deleted(cm) if cm.name_any() == "cm-c" => return true,
                WatchEvent::Error(status) => panic!("watch error: {status:?}"),
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(deleted, Ok(true), "the watch never showed cm-c's deletion");
    until(&ctx, "cm-c gone from the controller's cache", || {
        let store = store.clone();
        async move {
            let names: Vec<String> = store.state().iter().map(|cm| cm.name_any()).collect();
            (names.len() == 2 && !names.contains(&"cm-c".to_owned())).then_some(())
        }
    })
    .await;

    // Settled: no-op writes (the same apply, the annotation already there) wake nothing, so the
    // reconciles stop.
    // (The wakes of the last writes may still be in flight: wait for a quiet 2 s.)
    let deadline = Instant::now() + PATIENCE;
    let after = loop {
        let before = ctx.reconciles.lock().unwrap().clone();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = ctx.reconciles.lock().unwrap().clone();
        if before == after {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "the controller keeps reconciling: {before:?}, then {after:?}"
        );
    };
    eprintln!("reconciles: {after:?}");
    eprintln!("reconcile errors: {:?}", ctx.errors.lock().unwrap());

    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, controller)
        .await
        .expect("the controller did not stop")
        .unwrap();
    let stream_errors = ctx.stream_errors.lock().unwrap().clone();
    // Expected: cm-b's injected failure, and cm-c's Secret, deleted after cm-c, waking the
    // reconcile of an owner no longer in the cache (kube's `ObjectNotFound`).
    let unexpected: Vec<_> = stream_errors
        .iter()
        .filter(|error| {
            !(error.starts_with("ReconcilerFailed(Injected(\"cm-b\")")
                || error.starts_with("ObjectNotFound(") && error.contains("name: \"cm-c\""))
        })
        .collect();
    assert!(unexpected.is_empty(), "controller errors: {unexpected:#?}");
}
