//! The RBAC objects of the store, cached and kept current by watches, and the
//! [`Authorizer`] made from them.
//!
//! Four reflectors (Roles, ClusterRoles, RoleBindings, ClusterRoleBindings) fill four caches;
//! every change they apply bumps a generation counter, and the next decision rebuilds the
//! authorizer (aggregation included) once from the caches. Decisions wait for the first list of
//! all four: nothing is decided on an empty cache. As in Kubernetes, a grant or a revocation takes
//! effect as soon as its watch event arrives, not within the request that made it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use orchestra_core::api::{Api, Client};
use orchestra_core::rbac::Authorizer;
use orchestra_core::runtime::reflector::{self, Reader};
use orchestra_core::runtime::watcher::{WatcherConfig, watcher};
use tokio::task::AbortHandle;

/// How long a decision waits for the caches' first lists.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// See the [module documentation](self).
pub struct RbacCache {
    roles: Reader<Role>,
    cluster_roles: Reader<ClusterRole>,
    role_bindings: Reader<RoleBinding>,
    cluster_role_bindings: Reader<ClusterRoleBinding>,
    generation: Arc<AtomicU64>,
    built: Mutex<Option<(u64, Arc<Authorizer>)>>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for RbacCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacCache")
            .field("roles", &self.roles.len())
            .field("cluster_roles", &self.cluster_roles.len())
            .field("role_bindings", &self.role_bindings.len())
            .field("cluster_role_bindings", &self.cluster_role_bindings.len())
            .finish_non_exhaustive()
    }
}

/// Starts a reflector of `api` that bumps `generation` at every event, returning its reader and
/// task.
fn reflect<K>(api: Api<K>, generation: &Arc<AtomicU64>) -> (Reader<K>, AbortHandle)
where
    K: orchestra_core::resource::Resource
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Send + Sync,
{
    let (reader, writer) = reflector::store::<K>();
    let generation = generation.clone();
    let stream = reflector::reflector(writer, watcher(api, WatcherConfig::default()));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {
            generation.fetch_add(1, Ordering::Release);
        }
    });
    (reader, task.abort_handle())
}

impl RbacCache {
    /// Starts watching `client`'s RBAC objects (within a tokio runtime).
    pub fn start(client: Client) -> RbacCache {
        let generation = Arc::new(AtomicU64::new(0));
        let (roles, a) = reflect(Api::<Role>::all(client.clone()), &generation);
        let (cluster_roles, b) = reflect(Api::<ClusterRole>::all(client.clone()), &generation);
        let (role_bindings, c) = reflect(Api::<RoleBinding>::all(client.clone()), &generation);
        let (cluster_role_bindings, d) =
            reflect(Api::<ClusterRoleBinding>::all(client), &generation);
        RbacCache {
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
            generation,
            built: Mutex::new(None),
            tasks: vec![a, b, c, d],
        }
    }

    /// Whether every cache has its first list.
    pub fn is_ready(&self) -> bool {
        self.roles.is_ready()
            && self.cluster_roles.is_ready()
            && self.role_bindings.is_ready()
            && self.cluster_role_bindings.is_ready()
    }

    /// Waits until every cache has its first list.
    pub async fn wait_until_ready(&self) {
        self.roles.wait_until_ready().await;
        self.cluster_roles.wait_until_ready().await;
        self.role_bindings.wait_until_ready().await;
        self.cluster_role_bindings.wait_until_ready().await;
    }

    /// The authorizer over the objects cached now, once the first lists are in (or after
    /// [`READY_TIMEOUT`] without them, over what is cached: a store that cannot be watched
    /// grants less, never more).
    pub async fn authorizer(&self) -> Arc<Authorizer> {
        if !self.is_ready() {
            let _ = tokio::time::timeout(READY_TIMEOUT, self.wait_until_ready()).await;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, authorizer)) = built.as_ref()
            && *at == generation
        {
            return authorizer.clone();
        }
        let roles = self.roles.state();
        let cluster_roles = self.cluster_roles.state();
        let role_bindings = self.role_bindings.state();
        let cluster_role_bindings = self.cluster_role_bindings.state();
        let authorizer = Arc::new(Authorizer::new(
            roles.iter().map(|r| r.as_ref()),
            cluster_roles.iter().map(|r| r.as_ref()),
            role_bindings.iter().map(|b| b.as_ref()),
            cluster_role_bindings.iter().map(|b| b.as_ref()),
        ));
        *built = Some((generation, authorizer.clone()));
        authorizer
    }
}

impl Drop for RbacCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
