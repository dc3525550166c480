//! The controller manager: the reference controllers run together, as Kubernetes'
//! `kube-controller-manager` runs them.
//!
//! A [`ControllerManager`] runs the controllers it is told to (all of them by default, but the
//! token controller, which needs a signing key), on one [`Client`], until a shutdown future
//! resolves. Which ones run is chosen by [`ControllerName`], or with the syntax of
//! kube-controller-manager's `--controllers` flag ([`ControllerManager::controllers`]): `*` for
//! the default set, `name` to add one, `-name` to leave one out, so `*,-garbagecollector` runs
//! everything but the collector.
//!
//! With [`ControllerManager::leader_election`], the manager first takes a `Lease` and runs the
//! controllers only while it holds it, so that several replicas of a control plane can run one
//! manager each and only one acts ([`crate::runtime::leader_election`]).
//!
//! The manager spawns no task: [`ControllerManager::run`] is one future that drives every
//! controller, so dropping it (or aborting the task that runs it) stops them all at once, the way
//! a crashed process stops. Everything the controllers know is in the store and their caches are
//! rebuilt on start, so a manager started again picks up where the last one stopped.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client};
//! use orchestra_core::controllers::manager::{ControllerManager, ControllerName};
//! use orchestra_core::k8s::api::core::v1::ServiceAccount;
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let manager = ControllerManager::new(client.clone()).controllers("*,-garbagecollector")?;
//! assert!(!manager.enabled().contains(&ControllerName::GarbageCollector));
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(manager.run(async move {
//!     let _ = stopped.await;
//! }));
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
//! assert!(accounts.get_opt("default").await?.is_some());
//! let _ = stop.send(());
//! running.await.unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::cluster_role_aggregation::ClusterRoleAggregationController;
use super::deployment::DeploymentController;
use super::endpoints::EndpointsController;
use super::garbage_collector::GarbageCollector;
use super::namespace::NamespaceController;
use super::node_lifecycle::{NodeLifecycleConfig, NodeLifecycleController};
use super::replica_set::ReplicaSetController;
use super::root_ca_publisher::RootCaPublisher;
use super::service_account::ServiceAccountController;
use super::token::{TokenController, TokenIssuer};
use crate::api::Client;
use crate::runtime::leader_election::{LeaderElectionConfig, LeaderElectionError, LeaderElector};

/// One of the reference controllers, by the name kube-controller-manager gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ControllerName {
    /// `replicaset`: [`ReplicaSetController`] over ReplicaSets.
    ReplicaSet,
    /// `replicationcontroller`: [`ReplicaSetController::replication_controllers`].
    ReplicationController,
    /// `deployment`: [`DeploymentController`].
    Deployment,
    /// `endpoint`: [`EndpointsController`].
    Endpoints,
    /// `serviceaccount`: [`ServiceAccountController`].
    ServiceAccount,
    /// `serviceaccount-token`: [`TokenController`] (runs only with a token issuer).
    ServiceAccountToken,
    /// `namespace`: [`NamespaceController`].
    Namespace,
    /// `garbagecollector`: [`GarbageCollector`].
    GarbageCollector,
    /// `nodelifecycle`: [`NodeLifecycleController`] (lost nodes tainted, their pods evicted).
    NodeLifecycle,
    /// `clusterrole-aggregation`: [`ClusterRoleAggregationController`].
    ClusterRoleAggregation,
    /// `root-ca-cert-publisher`: [`RootCaPublisher`] (runs only with a root CA).
    RootCaPublisher,
}

impl ControllerName {
    /// Every controller, in the order the manager starts them.
    pub const ALL: [ControllerName; 11] = [
        ControllerName::Namespace,
        ControllerName::GarbageCollector,
        ControllerName::ServiceAccount,
        ControllerName::ServiceAccountToken,
        ControllerName::Endpoints,
        ControllerName::ReplicationController,
        ControllerName::ReplicaSet,
        ControllerName::Deployment,
        ControllerName::NodeLifecycle,
        ControllerName::ClusterRoleAggregation,
        ControllerName::RootCaPublisher,
    ];

    /// The name kube-controller-manager's `--controllers` flag uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerName::ReplicaSet => "replicaset",
            ControllerName::ReplicationController => "replicationcontroller",
            ControllerName::Deployment => "deployment",
            ControllerName::Endpoints => "endpoint",
            ControllerName::ServiceAccount => "serviceaccount",
            ControllerName::ServiceAccountToken => "serviceaccount-token",
            ControllerName::Namespace => "namespace",
            ControllerName::GarbageCollector => "garbagecollector",
            ControllerName::NodeLifecycle => "nodelifecycle",
            ControllerName::ClusterRoleAggregation => "clusterrole-aggregation",
            ControllerName::RootCaPublisher => "root-ca-cert-publisher",
        }
    }
}

impl fmt::Display for ControllerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ControllerName {
    type Err = ManagerError;

    fn from_str(name: &str) -> Result<ControllerName, ManagerError> {
        ControllerName::ALL
            .into_iter()
            .find(|controller| controller.as_str() == name)
            .ok_or_else(|| ManagerError::UnknownController(name.to_owned()))
    }
}

/// The manager could not be set up, or stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// A name in a controller list is not a controller's.
    #[error(
        "unknown controller {0:?} (known: replicaset, replicationcontroller, deployment, endpoint, serviceaccount, serviceaccount-token, namespace, garbagecollector, nodelifecycle)"
    )]
    UnknownController(String),
    /// A controller list has an empty item (as in `*,,-namespace`).
    #[error("empty item in the controller list {0:?}")]
    EmptyItem(String),
    /// The token controller was asked for without a token issuer to sign with.
    #[error(
        "the serviceaccount-token controller needs a signing key (ControllerManager::token_issuer)"
    )]
    TokenWithoutIssuer,
    /// Leader election failed: its timings are unsafe, or the lease was lost (the controllers
    /// were stopped).
    #[error("leader election: {0}")]
    LeaderElection(#[from] LeaderElectionError),
}

/// Runs the reference controllers together: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ControllerManager {
    client: Client,
    enabled: BTreeSet<ControllerName>,
    issuer: Option<TokenIssuer>,
    root_ca: Option<Vec<u8>>,
    leader_election: Option<LeaderElectionConfig>,
    node_lifecycle: NodeLifecycleConfig,
}

impl ControllerManager {
    /// A manager of every controller but the token controller (which runs once
    /// [`ControllerManager::token_issuer`] gives it a key) and the root CA publisher (once
    /// [`ControllerManager::root_ca`] gives it the CA), on `client`.
    pub fn new(client: Client) -> ControllerManager {
        ControllerManager {
            client,
            enabled: ControllerName::ALL
                .into_iter()
                .filter(|name| {
                    !matches!(
                        name,
                        ControllerName::ServiceAccountToken | ControllerName::RootCaPublisher
                    )
                })
                .collect(),
            issuer: None,
            root_ca: None,
            leader_election: None,
            node_lifecycle: NodeLifecycleConfig::default(),
        }
    }

    /// Chooses the controllers as kube-controller-manager's `--controllers` flag does: a comma
    /// list where `*` is the default set (every controller, the token controller only with an
    /// issuer), `name` adds a controller and `-name` removes one; without `*`, only the named
    /// controllers run.
    pub fn controllers(mut self, list: &str) -> Result<ControllerManager, ManagerError> {
        let mut enabled = BTreeSet::new();
        let mut disabled = BTreeSet::new();
        let mut defaults = false;
        for item in list.split(',').map(str::trim) {
            match item {
                "" => return Err(ManagerError::EmptyItem(list.to_owned())),
                "*" => defaults = true,
                _ => match item.strip_prefix('-') {
                    Some(name) => {
                        disabled.insert(name.parse::<ControllerName>()?);
                    }
                    None => {
                        enabled.insert(item.parse::<ControllerName>()?);
                    }
                },
            }
        }
        if defaults {
            enabled.extend(ControllerName::ALL.into_iter().filter(|name| match name {
                ControllerName::ServiceAccountToken => self.issuer.is_some(),
                ControllerName::RootCaPublisher => self.root_ca.is_some(),
                _ => true,
            }));
        }
        self.enabled = enabled.difference(&disabled).copied().collect();
        Ok(self)
    }

    /// Runs `controller` too.
    #[must_use]
    pub fn enable(mut self, controller: ControllerName) -> ControllerManager {
        self.enabled.insert(controller);
        self
    }

    /// Does not run `controller`.
    #[must_use]
    pub fn disable(mut self, controller: ControllerName) -> ControllerManager {
        self.enabled.remove(&controller);
        self
    }

    /// The issuer the token controller signs with; enables the token controller.
    #[must_use]
    pub fn token_issuer(mut self, issuer: TokenIssuer) -> ControllerManager {
        self.issuer = Some(issuer);
        self.enabled.insert(ControllerName::ServiceAccountToken);
        self
    }

    /// The cluster's CA certificate (PEM), which the token controller puts in token secrets as
    /// `ca.crt` (Kubernetes' `--root-ca-file`) and the root CA publisher in every namespace;
    /// enables the publisher.
    #[must_use]
    pub fn root_ca(mut self, pem: Vec<u8>) -> ControllerManager {
        self.root_ca = Some(pem);
        self.enabled.insert(ControllerName::RootCaPublisher);
        self
    }

    /// How the node lifecycle controller judges nodes (Kubernetes' 40 s grace period by
    /// default).
    #[must_use]
    pub fn node_lifecycle(mut self, config: NodeLifecycleConfig) -> ControllerManager {
        self.node_lifecycle = config;
        self
    }

    /// Runs the controllers only while holding the lease `config` names.
    #[must_use]
    pub fn leader_election(mut self, config: LeaderElectionConfig) -> ControllerManager {
        self.leader_election = Some(config);
        self
    }

    /// The controllers that will run, in start order.
    pub fn enabled(&self) -> Vec<ControllerName> {
        ControllerName::ALL
            .into_iter()
            .filter(|name| self.enabled.contains(name))
            .collect()
    }

    /// Runs the enabled controllers until `shutdown` resolves, then returns once each has
    /// finished the work in flight.
    ///
    /// With leader election, waits for the lease first; returns
    /// [`ManagerError::LeaderElection`] when the lease is lost (the controllers are stopped
    /// then, as kube-controller-manager exits).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ManagerError> {
        if self.enabled.contains(&ControllerName::ServiceAccountToken) && self.issuer.is_none() {
            return Err(ManagerError::TokenWithoutIssuer);
        }
        let (stop, stopped) = watch::channel(false);
        let all = futures_util::future::join_all(self.controller_futures(&stopped));
        let mut shutdown = std::pin::pin!(shutdown);
        match &self.leader_election {
            None => {
                let mut all = std::pin::pin!(all);
                tokio::select! {
                    biased;
                    _ = &mut all => {}
                    () = &mut shutdown => {
                        stop.send_replace(true);
                        all.await;
                    }
                }
                Ok(())
            }
            Some(config) => {
                let elector = LeaderElector::new(self.client.clone(), config.clone())?;
                let leading = elector.is_leader();
                let mut led = std::pin::pin!(elector.run(all));
                tokio::select! {
                    biased;
                    result = &mut led => result.map(|_| ()).map_err(ManagerError::from),
                    () = &mut shutdown => {
                        stop.send_replace(true);
                        // Not leading: the controllers never started; leading: let them finish,
                        // and the elector releases the lease.
                        if *leading.borrow() {
                            led.await.map(|_| ()).map_err(ManagerError::from)
                        } else {
                            Ok(())
                        }
                    }
                }
            }
        }
    }

    /// One future per enabled controller, each stopping when `shutdown` says so.
    fn controller_futures(&self, stopped: &watch::Receiver<bool>) -> Vec<BoxFuture<'static, ()>> {
        let client = &self.client;
        self.enabled()
            .into_iter()
            .filter_map(|name| {
                let mut stopped = stopped.clone();
                let stop = async move {
                    // An error means the manager is gone: stop too.
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                };
                let future: BoxFuture<'static, ()> = match name {
                    ControllerName::ReplicaSet => {
                        ReplicaSetController::new(client.clone()).run(stop).boxed()
                    }
                    ControllerName::ReplicationController => {
                        ReplicaSetController::replication_controllers(client.clone())
                            .run(stop)
                            .boxed()
                    }
                    ControllerName::Deployment => {
                        DeploymentController::new(client.clone()).run(stop).boxed()
                    }
                    ControllerName::Endpoints => {
                        EndpointsController::new(client.clone()).run(stop).boxed()
                    }
                    ControllerName::ServiceAccount => ServiceAccountController::new(client.clone())
                        .run(stop)
                        .boxed(),
                    ControllerName::ServiceAccountToken => {
                        let mut controller =
                            TokenController::new(client.clone(), self.issuer.clone()?);
                        if let Some(pem) = &self.root_ca {
                            controller = controller.root_ca(pem.clone());
                        }
                        controller.run(stop).boxed()
                    }
                    ControllerName::Namespace => {
                        NamespaceController::new(client.clone()).run(stop).boxed()
                    }
                    ControllerName::GarbageCollector => {
                        GarbageCollector::new(client.clone()).run(stop).boxed()
                    }
                    ControllerName::NodeLifecycle => {
                        NodeLifecycleController::with_config(client.clone(), self.node_lifecycle)
                            .run(stop)
                            .boxed()
                    }
                    ControllerName::ClusterRoleAggregation => {
                        ClusterRoleAggregationController::new(client.clone())
                            .run(stop)
                            .boxed()
                    }
                    ControllerName::RootCaPublisher => {
                        let pem = String::from_utf8_lossy(self.root_ca.as_deref()?).into_owned();
                        RootCaPublisher::new(client.clone(), pem).run(stop).boxed()
                    }
                };
                Some(future)
            })
            .collect()
    }
}
