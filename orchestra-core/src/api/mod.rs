//! The typed API: Kubernetes' object semantics over a [`Store`](crate::store::Store).
//!
//! [`Api<K>`] is to Orchestra what kube-rs's `Api<K>` is to a Kubernetes cluster — create, get,
//! list, replace, patch, delete and watch objects of one kind, in one namespace or all — but it
//! runs in-process, over a [`Client`] that does the API server's work itself:
//!
//! - **create** sets the uid, `creationTimestamp`, `generation: 1` and a name from `generateName`,
//!   requires the namespace to exist (and not to be terminating), and refuses a name that is taken
//!   (409 AlreadyExists);
//! - every write is **defaulted, validated** (422 Invalid with one cause per problem) and offered
//!   to the **admission chain** ([`admission`]; Kubernetes' `Priority` plugin runs by default, so
//!   a pod's `priorityClassName` sets its `priority`) before it is stored; `dry_run` does all of it
//!   and stores nothing;
//! - **updates** are optimistic: an object whose `resourceVersion` is not the stored one is refused
//!   (409 Conflict); `generation` advances only when something other than metadata and status
//!   changes; writes to an object leave its status alone and writes to its status leave the rest
//!   alone (the status subresource); Deployments, ReplicaSets and ReplicationControllers have a
//!   scale subresource;
//! - **patches** take JSON patches, JSON merge patches and strategic merge patches ([`crate::patch`]);
//!   a server-side apply (`PatchType::Apply`, with a field manager) creates the object when it
//!   does not exist, and every write with a field manager records the fields it owns in
//!   `metadata.managedFields`;
//! - **deletes** honour preconditions, finalizers (the object is marked with a
//!   `deletionTimestamp` and goes when its last finalizer is removed), propagation policies
//!   (recorded as the `orphan` and `foregroundDeletion` finalizers for the garbage collector) and,
//!   for pods on a node, a grace period;
//! - **lists** take label and field selectors, pages (`limit` and `continue`, each page read at
//!   the first page's revision) and resource-version semantics; **watches** start at a resource
//!   version, deliver bookmarks, and end with 410 Gone when that version was compacted.
//!
//! Errors are Kubernetes `Status` errors ([`StatusError`]): 404 NotFound, 409 AlreadyExists and
//! Conflict, 410 Gone, 422 Invalid, 403 Forbidden.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::api::{Api, Client, ListParams, PostParams};
//! use orchestra_core::k8s::api::core::v1::ConfigMap;
//! use orchestra_core::resource::ResourceExt;
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?; // the default namespaces
//! let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
//!
//! let mut settings = ConfigMap::default();
//! settings.metadata.name = Some("settings".into());
//! let created = config_maps.create(&PostParams::default(), &settings).await?;
//! assert!(created.uid().is_some());
//!
//! // A second write based on a stale copy is refused.
//! let mut first = created.clone();
//! first.data = Some([("mode".to_owned(), "fast".to_owned())].into());
//! config_maps.replace("settings", &PostParams::default(), &first).await?;
//! let mut stale = created;
//! stale.data = Some([("mode".to_owned(), "slow".to_owned())].into());
//! let error = config_maps.replace("settings", &PostParams::default(), &stale).await.unwrap_err();
//! assert_eq!(error.code, 409);
//!
//! assert_eq!(config_maps.list(&ListParams::default()).await?.items.len(), 1);
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

pub mod admission;
mod client;
pub mod keys;
mod params;
mod strategy;
pub mod transport;
mod watch;

use std::fmt;
use std::marker::PhantomData;

use futures_util::stream::BoxStream;
use k8s_openapi::api::autoscaling::v1::Scale;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use admission::{Admission, AdmissionRequest, Operation, Priority};
pub use client::{
    Client, ClientBuilder, DEFAULT_BOOKMARK_INTERVAL, Deletion, ObjectList, SYSTEM_NAMESPACES,
    Subresource,
};
pub use params::{
    DeleteParams, ListParams, PatchParams, PostParams, PropagationPolicy, VersionMatch, WatchParams,
};
pub use transport::Transport;
pub use watch::WatchEvent;

use crate::k8s::api::core::v1::Pod;
use crate::resource::{ApiResource, DynamicObject, Resource};
use crate::status::StatusError;

/// The typed API of one kind, in one namespace or across all: see the
/// [module documentation](self).
pub struct Api<K: Resource> {
    client: Client,
    resource: ApiResource,
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: Resource> fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("resource", &self.resource)
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn to_dynamic<K: Serialize>(object: &K) -> Result<DynamicObject, StatusError> {
    DynamicObject::from_typed(object)
        .map_err(|error| StatusError::internal(format!("cannot encode the object: {error}")))
}

fn from_dynamic<K: DeserializeOwned>(object: DynamicObject) -> Result<K, StatusError> {
    object
        .into_typed()
        .map_err(|error| StatusError::internal(format!("cannot decode the object: {error}")))
}

impl<K> Api<K>
where
    K: Resource<DynamicType = ()>,
{
    /// The API of `K` in `namespace` (for a cluster-scoped kind, the namespace is ignored).
    pub fn namespaced(client: Client, namespace: &str) -> Api<K> {
        Api::namespaced_with(client, namespace, &())
    }

    /// The API of `K` across all namespaces (lists and watches see every namespace; creating needs
    /// the object's own namespace).
    pub fn all(client: Client) -> Api<K> {
        Api::all_with(client, &())
    }
}

impl<K> Api<K>
where
    K: Resource,
{
    /// The API of a kind described at run time, in `namespace`.
    pub fn namespaced_with(client: Client, namespace: &str, dt: &K::DynamicType) -> Api<K> {
        let resource = ApiResource::erase::<K>(dt);
        let namespace = resource.namespaced.then(|| namespace.to_owned());
        Api {
            client,
            resource,
            namespace,
            _kind: PhantomData,
        }
    }

    /// The API of a kind described at run time, across all namespaces.
    pub fn all_with(client: Client, dt: &K::DynamicType) -> Api<K> {
        Api {
            client,
            resource: ApiResource::erase::<K>(dt),
            namespace: None,
            _kind: PhantomData,
        }
    }

    /// The kind this API serves.
    pub fn resource(&self) -> &ApiResource {
        &self.resource
    }

    /// The namespace this API is in, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The client under this API.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl<K> Api<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    /// Creates an object.
    pub async fn create(&self, params: &PostParams, object: &K) -> Result<K, StatusError> {
        let object = to_dynamic(object)?;
        let created = self
            .client
            .create(&self.resource, self.namespace.as_deref(), object, params)
            .await?;
        from_dynamic(created)
    }

    /// Reads an object.
    pub async fn get(&self, name: &str) -> Result<K, StatusError> {
        from_dynamic(
            self.client
                .get(&self.resource, self.namespace.as_deref(), name)
                .await?,
        )
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, StatusError> {
        match self.get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Lists objects.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, StatusError> {
        self.client
            .list_typed(&self.resource, self.namespace.as_deref(), params)
            .await
    }

    /// Replaces an object (its status is left alone when the kind has a status subresource).
    pub async fn replace(
        &self,
        name: &str,
        params: &PostParams,
        object: &K,
    ) -> Result<K, StatusError> {
        self.replace_subresource(name, params, object, Subresource::Main)
            .await
    }

    /// Replaces an object's status (nothing else of it changes).
    pub async fn replace_status(
        &self,
        name: &str,
        params: &PostParams,
        object: &K,
    ) -> Result<K, StatusError> {
        self.replace_subresource(name, params, object, Subresource::Status)
            .await
    }

    async fn replace_subresource(
        &self,
        name: &str,
        params: &PostParams,
        object: &K,
        subresource: Subresource,
    ) -> Result<K, StatusError> {
        let object = to_dynamic(object)?;
        let replaced = self
            .client
            .replace(
                &self.resource,
                self.namespace.as_deref(),
                name,
                object,
                params,
                subresource,
            )
            .await?;
        from_dynamic(replaced)
    }

    /// Patches an object.
    pub async fn patch(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Value,
    ) -> Result<K, StatusError> {
        from_dynamic(
            self.client
                .patch(
                    &self.resource,
                    self.namespace.as_deref(),
                    name,
                    patch,
                    params,
                    Subresource::Main,
                )
                .await?,
        )
    }

    /// Patches an object's status.
    pub async fn patch_status(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Value,
    ) -> Result<K, StatusError> {
        from_dynamic(
            self.client
                .patch(
                    &self.resource,
                    self.namespace.as_deref(),
                    name,
                    patch,
                    params,
                    Subresource::Status,
                )
                .await?,
        )
    }

    /// Deletes an object.
    pub async fn delete(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deletion<K>, StatusError> {
        Ok(
            match self
                .client
                .delete(&self.resource, self.namespace.as_deref(), name, params)
                .await?
            {
                Deletion::Deleted(object) => Deletion::Deleted(from_dynamic(object)?),
                Deletion::InProgress(object) => Deletion::InProgress(from_dynamic(object)?),
            },
        )
    }

    /// Watches objects from a resource version (see [`Client::watch`]).
    pub async fn watch(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent<K>>, StatusError> {
        self.client
            .watch_typed::<K>(
                &self.resource,
                self.namespace.as_deref(),
                params,
                resource_version,
            )
            .await
    }

    /// The scale of the object (Deployments, ReplicaSets, ReplicationControllers).
    pub async fn get_scale(&self, name: &str) -> Result<Scale, StatusError> {
        self.client
            .get_scale(&self.resource, self.namespace.as_deref(), name)
            .await
    }

    /// Sets the object's replicas through its scale.
    pub async fn replace_scale(
        &self,
        name: &str,
        params: &PostParams,
        scale: &Scale,
    ) -> Result<Scale, StatusError> {
        self.client
            .replace_scale(
                &self.resource,
                self.namespace.as_deref(),
                name,
                scale,
                params,
            )
            .await
    }
}

impl Api<Pod> {
    /// Binds a pod to a node (the `pods/binding` subresource; see [`Client::bind`]).
    pub async fn bind(&self, name: &str, node: &str) -> Result<Pod, StatusError> {
        let namespace = self.namespace.as_deref().unwrap_or("default");
        from_dynamic(self.client.bind(namespace, name, node).await?)
    }
}
