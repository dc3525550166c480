//! The root CA publisher (Kubernetes' `root-ca-cert-publisher` controller,
//! `pkg/controller/certificates/rootcacertpublisher`): a ConfigMap `kube-root-ca.crt` in every
//! active namespace holding the cluster CA's certificate under `ca.crt`, so that pods can trust
//! the API server (the projected service-account volume reads it).
//!
//! A [`Controller`] of Namespaces that also watches the ConfigMaps of that name: a missing one is
//! created, one whose `ca.crt` differs (after a CA rotation, or an edit) is written back, and a
//! deleted one comes back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{Api, Client, PostParams};
use crate::runtime::Action;
use crate::runtime::controller::Controller;
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::WatcherConfig;
use crate::status::{StatusError, StatusReason};

/// The name of the ConfigMap in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The key of the certificate in it.
pub const ROOT_CA_KEY: &str = "ca.crt";

/// The description annotation Kubernetes puts on it.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Writing a namespace's ConfigMap failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[error("cannot publish the root CA in namespace {namespace}: {source}")]
pub struct PublishError {
    /// The namespace.
    pub namespace: String,
    /// The API's answer.
    #[source]
    pub source: StatusError,
}

/// See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct RootCaPublisher {
    client: Client,
    ca_pem: String,
}

struct Context {
    client: Client,
    ca_pem: String,
    config_maps: Reader<ConfigMap>,
}

impl RootCaPublisher {
    /// Publishes `ca_pem` (the cluster CA's certificate, PEM) in `client`'s namespaces.
    pub fn new(client: Client, ca_pem: impl Into<String>) -> RootCaPublisher {
        RootCaPublisher {
            client,
            ca_pem: ca_pem.into(),
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let config = WatcherConfig::default();
        let (controller, config_maps) =
            Controller::new(Api::<Namespace>::all(self.client.clone()), config.clone())
                .watches_with(
                    Api::<ConfigMap>::all(self.client.clone()),
                    config.fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
                    |map: &ConfigMap| {
                        map.metadata
                            .namespace
                            .iter()
                            .map(|namespace| ObjectRef::new(namespace))
                            .collect()
                    },
                );
        let context = Arc::new(Context {
            client: self.client,
            ca_pem: self.ca_pem,
            config_maps,
        });
        controller.run(publish, context, shutdown).await;
    }
}

async fn publish(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, PublishError> {
    let active = namespace.metadata.deletion_timestamp.is_none()
        && namespace
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            .is_none_or(|phase| phase == "Active");
    let Some(name) = namespace.metadata.name.as_deref().filter(|_| active) else {
        return Ok(Action::await_change());
    };
    let api: Api<ConfigMap> = Api::namespaced(context.client.clone(), name);
    let existing = context
        .config_maps
        .get(&ObjectRef::new(ROOT_CA_CONFIG_MAP).within(name));
    let data = BTreeMap::from([(ROOT_CA_KEY.to_owned(), context.ca_pem.clone())]);
    let outcome = match existing {
        Some(map) if map.data.as_ref() == Some(&data) => return Ok(Action::await_change()),
        Some(map) => {
            let mut updated = ConfigMap::clone(&map);
            updated.data = Some(data);
            api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &updated)
                .await
                .map(drop)
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIG_MAP.to_owned()),
                    namespace: Some(name.to_owned()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_owned(),
                        DESCRIPTION.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            api.create(&PostParams::default(), &map).await.map(drop)
        }
    };
    match outcome {
        Ok(()) => Ok(Action::await_change()),
        // The cache is behind, or the namespace is going: the next event decides.
        Err(error)
            if matches!(
                error.reason,
                StatusReason::AlreadyExists | StatusReason::Conflict | StatusReason::NotFound
            ) || (error.reason == StatusReason::Forbidden
                && error.message.contains("is being terminated")) =>
        {
            Ok(Action::await_change())
        }
        Err(source) => Err(PublishError {
            namespace: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::DeleteParams;
    use crate::store::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn every_namespace_gets_the_ca_and_keeps_it() {
        let client = Client::new(MemoryStore::new());
        client.bootstrap().await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(RootCaPublisher::new(client.clone(), "PEM").run(async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let map = maps.get(ROOT_CA_CONFIG_MAP).await.unwrap();
        assert_eq!(map.data.unwrap()[ROOT_CA_KEY], "PEM");

        maps.delete(ROOT_CA_CONFIG_MAP, &DeleteParams::default())
            .await
            .unwrap();
        let mut edited = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
            .get(ROOT_CA_CONFIG_MAP)
            .await
            .unwrap();
        edited.data = Some(BTreeMap::from([(
            ROOT_CA_KEY.to_owned(),
            "forged".to_owned(),
        )]));
        Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
            .replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &edited)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        for namespace in ["default", "kube-system"] {
            let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get(ROOT_CA_CONFIG_MAP)
                .await
                .unwrap();
            assert_eq!(map.data.unwrap()[ROOT_CA_KEY], "PEM", "{namespace}");
        }
        let _ = stop.send(());
        running.await.unwrap();
    }
}
