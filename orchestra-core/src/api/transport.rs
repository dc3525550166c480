//! The seam between a [`Client`](super::Client) and an API server in another process.
//!
//! A client made with [`Client::remote`](super::Client::remote) does none of the API server's
//! work itself: it hands every call to a [`Transport`], which carries it to a server (over HTTP:
//! `orchestra_api::remote`) and brings back the answer. Controllers, schedulers and node agents
//! written against [`Api<K>`](super::Api) run unchanged over either kind of client.

use std::fmt;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::autoscaling::v1::Scale;
use serde_json::Value;

use super::{
    DeleteParams, Deletion, ListParams, ObjectList, PatchParams, PostParams, Subresource,
    WatchEvent, WatchParams,
};
use crate::resource::{ApiResource, DynamicObject};
use crate::status::StatusError;

/// Carries a client's calls to an API server; the calls mean what [`Client`](super::Client)'s
/// methods of the same names mean.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Creates an object.
    async fn create(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        object: DynamicObject,
        params: &PostParams,
    ) -> Result<DynamicObject, StatusError>;

    /// Reads one object.
    async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<DynamicObject, StatusError>;

    /// Lists objects.
    async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<DynamicObject>, StatusError>;

    /// Replaces an object or its status.
    async fn replace(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: DynamicObject,
        params: &PostParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError>;

    /// Patches an object or its status.
    async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        params: &PatchParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError>;

    /// Deletes an object.
    async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deletion<DynamicObject>, StatusError>;

    /// Watches objects from a resource version.
    async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent<DynamicObject>>, StatusError>;

    /// Binds a pod to a node (`pods/binding`); returns the bound pod.
    async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
    ) -> Result<DynamicObject, StatusError>;

    /// Reads an object's scale.
    async fn get_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Scale, StatusError>;

    /// Sets an object's scale.
    async fn replace_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        scale: &Scale,
        params: &PostParams,
    ) -> Result<Scale, StatusError>;

    /// Asks for a token of a service account (`serviceaccounts/token`, Kubernetes'
    /// TokenRequest); returns the request with its `status` filled in.
    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, StatusError>;
}
