//! The service-account controller over a `MemoryStore`: every active namespace gets its
//! `default` account (or the configured ones), made again when deleted, and a terminating
//! namespace gets none.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, DeleteParams, Deletion, ListParams, PostParams};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::service_account::{
    DEFAULT_SERVICE_ACCOUNT, ServiceAccountController,
};
use orchestra_core::resource::ResourceExt;
use orchestra_core::store::MemoryStore;
use tokio::task::JoinHandle;

const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

async fn client() -> Client {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
        .build();
    client.bootstrap().await.unwrap();
    client
}

/// A controller running on its own task, until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops promptly")
            .unwrap();
    }
}

fn start(controller: ServiceAccountController) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    Running {
        stop,
        task: tokio::spawn(controller.run(async move {
            let _ = stopped.await;
        })),
    }
}

/// Waits (in paused time) until `check` holds, for at most a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

async fn create_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(name),
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
}

fn accounts(client: &Client, namespace: &str) -> Api<ServiceAccount> {
    Api::namespaced(client.clone(), namespace)
}

/// The names of the accounts of a namespace, sorted.
async fn account_names(client: &Client, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> = accounts(client, namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|account| account.name_any())
        .collect();
    names.sort();
    names
}

async fn uid_of(api: &Api<ServiceAccount>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|account| account.uid().map(str::to_owned))
}

#[tokio::test(start_paused = true)]
async fn every_existing_namespace_gets_a_default_account() {
    let client = client().await;
    create_namespace(&client, "shop").await;
    // An account that exists already is left as it is.
    let mut existing = ServiceAccount {
        metadata: meta(DEFAULT_SERVICE_ACCOUNT),
        ..ServiceAccount::default()
    };
    existing.metadata.labels = Some([("owner".to_owned(), "me".to_owned())].into());
    let shop = accounts(&client, "shop");
    let existing = shop
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();

    let controller = start(ServiceAccountController::new(client.clone()));
    eventually("every namespace has its default account", || async {
        for namespace in SYSTEM_NAMESPACES {
            if account_names(&client, namespace).await != [DEFAULT_SERVICE_ACCOUNT] {
                return false;
            }
        }
        true
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        account_names(&client, "shop").await,
        [DEFAULT_SERVICE_ACCOUNT]
    );
    let kept = shop.get(DEFAULT_SERVICE_ACCOUNT).await.unwrap();
    assert_eq!(kept.uid(), existing.uid());
    assert_eq!(kept.resource_version(), existing.resource_version());
    assert_eq!(kept.labels().get("owner").map(String::as_str), Some("me"));
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_namespace_gets_a_default_account() {
    let client = client().await;
    let controller = start(ServiceAccountController::new(client.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(account_names(&client, "team").await.is_empty());

    create_namespace(&client, "team").await;
    let team = accounts(&client, "team");
    eventually("the new namespace has its default account", || async {
        uid_of(&team, DEFAULT_SERVICE_ACCOUNT).await.is_some()
    })
    .await;
    let account = team.get(DEFAULT_SERVICE_ACCOUNT).await.unwrap();
    assert_eq!(account.namespace(), Some("team"));
    assert!(account.metadata.creation_timestamp.is_some());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        account_names(&client, "team").await,
        [DEFAULT_SERVICE_ACCOUNT],
        "only the default account"
    );
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_default_account_is_made_again() {
    let client = client().await;
    create_namespace(&client, "shop").await;
    let controller = start(ServiceAccountController::new(client.clone()));
    let shop = accounts(&client, "shop");
    eventually("the default account exists", || async {
        uid_of(&shop, DEFAULT_SERVICE_ACCOUNT).await.is_some()
    })
    .await;

    for _ in 0..2 {
        let before = uid_of(&shop, DEFAULT_SERVICE_ACCOUNT).await.unwrap();
        let Deletion::Deleted(_) = shop
            .delete(DEFAULT_SERVICE_ACCOUNT, &DeleteParams::default())
            .await
            .unwrap()
        else {
            panic!("an account without finalizers goes at once");
        };
        eventually("the default account is made again", || async {
            uid_of(&shop, DEFAULT_SERVICE_ACCOUNT)
                .await
                .is_some_and(|uid| uid != before)
        })
        .await;
    }
    assert_eq!(
        account_names(&client, "shop").await,
        [DEFAULT_SERVICE_ACCOUNT]
    );
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_terminating_namespace_gets_no_account() {
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Terminating before the controller starts (no namespace controller finishes it).
    create_namespace(&client, "doomed").await;
    let Deletion::InProgress(doomed) = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("a namespace waits for its finalizer");
    };
    assert!(doomed.metadata.deletion_timestamp.is_some());
    // Terminating while the controller runs, after it got its account.
    create_namespace(&client, "closing").await;

    let controller = start(ServiceAccountController::new(client.clone()));
    let closing = accounts(&client, "closing");
    eventually("the active namespace has its account", || async {
        uid_of(&closing, DEFAULT_SERVICE_ACCOUNT).await.is_some()
    })
    .await;
    // Every namespace that is active got its account in the same pass.
    for namespace in SYSTEM_NAMESPACES {
        assert_eq!(
            account_names(&client, namespace).await,
            [DEFAULT_SERVICE_ACCOUNT]
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(account_names(&client, "doomed").await.is_empty());

    let Deletion::InProgress(_) = namespaces
        .delete("closing", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("a namespace waits for its finalizer");
    };
    // What the namespace controller does: empty it.
    closing
        .delete(DEFAULT_SERVICE_ACCOUNT, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        account_names(&client, "closing").await.is_empty(),
        "a terminating namespace does not get its account back"
    );
    assert!(account_names(&client, "doomed").await.is_empty());

    // The controller still serves the others.
    create_namespace(&client, "later").await;
    let later = accounts(&client, "later");
    eventually("a namespace created later has its account", || async {
        uid_of(&later, DEFAULT_SERVICE_ACCOUNT).await.is_some()
    })
    .await;
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn configured_accounts_are_kept_instead_of_default() {
    let client = client().await;
    create_namespace(&client, "ci").await;
    let controller =
        start(ServiceAccountController::new(client.clone()).accounts(["builder", "deployer"]));
    eventually("every namespace has the configured accounts", || async {
        for namespace in SYSTEM_NAMESPACES.into_iter().chain(["ci"]) {
            if account_names(&client, namespace).await != ["builder", "deployer"] {
                return false;
            }
        }
        true
    })
    .await;

    create_namespace(&client, "team").await;
    eventually("a new namespace has the configured accounts", || async {
        account_names(&client, "team").await == ["builder", "deployer"]
    })
    .await;

    // A deleted configured account comes back.
    let ci = accounts(&client, "ci");
    let before = uid_of(&ci, "builder").await.unwrap();
    ci.delete("builder", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted account is made again", || async {
        uid_of(&ci, "builder")
            .await
            .is_some_and(|uid| uid != before)
    })
    .await;

    // Other accounts are not the controller's business: `default` is neither made nor kept.
    ci.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta(DEFAULT_SERVICE_ACCOUNT),
            ..ServiceAccount::default()
        },
    )
    .await
    .unwrap();
    ci.delete(DEFAULT_SERVICE_ACCOUNT, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(account_names(&client, "ci").await, ["builder", "deployer"]);
    assert_eq!(
        account_names(&client, "team").await,
        ["builder", "deployer"]
    );
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_accounts_configured_makes_none() {
    let client = client().await;
    let controller =
        start(ServiceAccountController::new(client.clone()).accounts(Vec::<String>::new()));
    create_namespace(&client, "team").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    for namespace in SYSTEM_NAMESPACES.into_iter().chain(["team"]) {
        assert!(account_names(&client, namespace).await.is_empty());
    }
    controller.stop().await;
}
