//! The service-account controller: a `default` ServiceAccount in every active namespace
//! (Kubernetes' `pkg/controller/serviceaccount`, `ServiceAccountsController`).
//!
//! Pods run as a service account, `default` unless they name another, so every namespace needs
//! one. [`ServiceAccountController`] creates the accounts it is configured with (just `default`,
//! as Kubernetes' controller manager configures it) in every namespace whose phase is `Active`,
//! and creates them again when they are deleted. A terminating namespace gets none: it is being
//! emptied, and the API refuses new objects in it anyway.
//!
//! It is a [`Controller`] of Namespaces that also watches ServiceAccounts: the deletion of a
//! managed account reconciles its namespace, which creates the account again. Tokens for the
//! accounts are the [`token`](super::token) controller's business.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client};
//! use orchestra_core::controllers::service_account::ServiceAccountController;
//! use orchestra_core::k8s::api::core::v1::ServiceAccount;
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(ServiceAccountController::new(client.clone()).run(async move {
//!     let _ = stopped.await;
//! }));
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! let accounts: Api<ServiceAccount> = Api::namespaced(client, "kube-system");
//! assert!(accounts.get_opt("default").await?.is_some());
//! let _ = stop.send(());
//! running.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{Api, Client, PostParams};
use crate::runtime::Action;
use crate::runtime::controller::Controller;
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::WatcherConfig;
use crate::status::{StatusError, StatusReason};

/// The name of the service account every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// A sync of a namespace failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceAccountError {
    /// Creating an account failed.
    #[error("cannot create service account {namespace}/{name}: {source}")]
    Create {
        /// The namespace.
        namespace: String,
        /// The account's name.
        name: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
}

/// Keeps the configured service accounts in every active namespace: see the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct ServiceAccountController {
    client: Client,
    accounts: Vec<String>,
}

impl ServiceAccountController {
    /// The controller of the namespaces `client` serves, keeping a `default` account in each.
    pub fn new(client: Client) -> ServiceAccountController {
        ServiceAccountController {
            client,
            accounts: vec![DEFAULT_SERVICE_ACCOUNT.to_owned()],
        }
    }

    /// The accounts every namespace gets (instead of just `default`).
    #[must_use]
    pub fn accounts<I, N>(mut self, names: I) -> ServiceAccountController
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.accounts = names.into_iter().map(Into::into).collect();
        self
    }

    /// Runs the controller until `shutdown` resolves (then returns once the syncs in flight are
    /// done).
    pub async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let config = WatcherConfig::default();
        let names = Arc::new(self.accounts);
        let managed = Arc::clone(&names);
        let (controller, accounts) =
            Controller::new(Api::<Namespace>::all(self.client.clone()), config.clone())
                .watches_with(
                    Api::<ServiceAccount>::all(self.client.clone()),
                    config,
                    move |account: &ServiceAccount| {
                        let managed_name = account
                            .metadata
                            .name
                            .as_ref()
                            .is_some_and(|name| managed.contains(name));
                        match (&account.metadata.namespace, managed_name) {
                            (Some(namespace), true) => vec![ObjectRef::new(namespace)],
                            _ => Vec::new(),
                        }
                    },
                );
        let context = Arc::new(SyncContext {
            client: self.client,
            accounts,
            names,
        });
        controller.run(sync_namespace, context, shutdown).await;
    }
}

struct SyncContext {
    client: Client,
    accounts: Reader<ServiceAccount>,
    names: Arc<Vec<String>>,
}

/// Whether a namespace takes new objects: not being deleted, phase `Active` (or not yet set).
fn is_active(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            .is_none_or(|phase| phase == "Active")
}

/// Creates the accounts a namespace lacks.
async fn sync_namespace(
    namespace: Arc<Namespace>,
    context: Arc<SyncContext>,
) -> Result<Action, ServiceAccountError> {
    if !is_active(&namespace) {
        return Ok(Action::await_change());
    }
    let Some(namespace) = namespace.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let api: Api<ServiceAccount> = Api::namespaced(context.client.clone(), namespace);
    for name in context.names.iter() {
        let key = ObjectRef::new(name).within(namespace);
        if context.accounts.get(&key).is_some() {
            continue;
        }
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            // The cache is behind, or the namespace went (or is going) meanwhile: nothing to do.
            Err(error)
                if error.reason == StatusReason::AlreadyExists
                    || error.reason == StatusReason::NotFound
                    || (error.reason == StatusReason::Forbidden
                        && error.message.contains("is being terminated")) => {}
            Err(source) => {
                return Err(ServiceAccountError::Create {
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    Ok(Action::await_change())
}
