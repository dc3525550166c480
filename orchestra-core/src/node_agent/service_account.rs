//! Projected service-account token volumes: what kubelet's projected volume plugin and token
//! manager do for the `kube-api-access-*` volume the
//! [`ServiceAccount`](crate::api::admission::ServiceAccount) admission plugin gives pods.
//!
//! For every projected volume of a pod that holds a `serviceAccountToken` source,
//! [`ServiceAccountVolumes::project`] asks the API for a token of the pod's account
//! ([`Client::create_token`]), bound to the pod (its name and uid), for the source's audience
//! (the API server's when it names none) and lifetime, and writes the volume's files into a
//! directory of the host, [`ServiceAccountVolumes::volume_dir`]
//! (`<pods dir>/<pod uid>/volumes/kubernetes.io~projected/<volume>`, as kubelet lays it out):
//!
//! - the token at the source's `path` (`token`);
//! - ConfigMap sources (`ca.crt` from `kube-root-ca.crt`): the agent's own root CA for
//!   `kube-root-ca.crt` when it has one, else the ConfigMap's data, its `items` or every key;
//! - Secret sources, likewise;
//! - downward API sources (`namespace` from `metadata.namespace`).
//!
//! Each file is written whole to a temporary file and renamed into place, so that a reader never
//! sees half a token, with the volume's `defaultMode` (0644 unless the volume says otherwise;
//! directories are 0755, so that the files can be reached). The token is asked for again when
//! 80% of its lifetime has passed, or 24 hours, whichever comes first (kubelet's rule); when that
//! fails, the token held is kept until it expires. The pod's directory goes when the pod does
//! ([`ServiceAccountVolumes::remove`], [`ServiceAccountVolumes::retain`]).
//!
//! A container mounting such a volume gets the directory as a read-only [`Mount`] at its
//! `mountPath` (for runtimes that isolate containers); since the process runtime cannot mount,
//! every container of the pod also gets `ORCHESTRA_SERVICE_ACCOUNT_DIR` (the directory on the
//! host) and, when the agent knows the API server's address, `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT` ([`PodVolumes`]). When no token can be had, the containers that
//! mount the volume wait with `CreateContainerConfigError` and the reason.
//!
//! [`Mount`]: crate::container_runtime::Mount
//!
//! # Differences from Kubernetes
//!
//! - A ConfigMap or Secret source whose object does not exist is left out instead of failing the
//!   volume (no controller publishes `kube-root-ca.crt` yet).
//! - Files are renamed into place one by one, not swapped as a whole through a `..data` link.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, ProjectedVolumeSource, Secret};

use super::environment::{ConfigSource, PodContext, field_value};
use crate::api::admission::service_account::DEFAULT_SERVICE_ACCOUNT;
use crate::api::{Api, Client};
use crate::clock::Clock;

/// The variable naming the host directory of a pod's service-account token volume.
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "ORCHESTRA_SERVICE_ACCOUNT_DIR";

/// The variable naming the API server's host.
pub const SERVICE_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";

/// The variable naming the API server's port.
pub const SERVICE_PORT_ENV: &str = "KUBERNETES_SERVICE_PORT";

/// The lifetime of a token whose source names none (the TokenRequest default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The longest a token is kept before it is asked for again, whatever its lifetime (kubelet's).
const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 3600);

/// The mode of files of a volume that names none (Kubernetes' `defaultMode`, 0644).
const DEFAULT_FILE_MODE: u32 = 0o644;

/// The host's address of the API server, as pods are told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServerAddress {
    /// Its host name or IP.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// A token the agent holds for one volume of one pod.
#[derive(Clone, Debug)]
struct Held {
    /// When it is to be asked for again.
    refresh_at: Timestamp,
    /// When it stops working.
    expires_at: Timestamp,
}

/// What a pod's projected service-account volumes came to, for its containers: a
/// [`ConfigSource`] over the pod's ConfigMaps and Secrets that also answers
/// [`ConfigSource::volume_dir`] and [`ConfigSource::pod_env`].
#[derive(Clone, Copy)]
pub struct PodVolumes<'a> {
    /// The pod's ConfigMaps and Secrets.
    pub source: &'a dyn ConfigSource,
    /// The pod's token volumes: their directories, or why they could not be made.
    pub volumes: &'a BTreeMap<String, Result<PathBuf, String>>,
    /// The variables every container gets.
    pub env: &'a [(String, String)],
}

impl std::fmt::Debug for PodVolumes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodVolumes")
            .field("volumes", &self.volumes)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl ConfigSource for PodVolumes<'_> {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.source.config_map(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.source.secret(namespace, name)
    }

    fn volume_dir(&self, volume: &str) -> Option<Result<PathBuf, String>> {
        self.volumes.get(volume).cloned()
    }

    fn pod_env(&self) -> Vec<(String, String)> {
        self.env.to_vec()
    }
}

/// The projected service-account volumes of a node's pods: see the [module](self).
///
/// Clones share the tokens held.
#[derive(Clone, Debug)]
pub struct ServiceAccountVolumes {
    client: Client,
    clock: Arc<dyn Clock>,
    pods_dir: PathBuf,
    root_ca: Option<String>,
    api_server: Option<ApiServerAddress>,
    held: Arc<Mutex<BTreeMap<(String, String), Held>>>,
}

/// The projected volume source of `volume` when it holds a service-account token.
fn token_volume(volume: &k8s_openapi::api::core::v1::Volume) -> Option<&ProjectedVolumeSource> {
    volume.projected.as_ref().filter(|projected| {
        projected
            .sources
            .iter()
            .flatten()
            .any(|source| source.service_account_token.is_some())
    })
}

/// Whether `path` is a plain relative path (no `..`, not absolute).
fn relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

/// The files of a ConfigMap or Secret source: its `items`, or every key.
fn pick(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    files: &mut BTreeMap<String, (Vec<u8>, Option<i32>)>,
) {
    match items {
        Some(items) => {
            for item in items {
                if let Some(value) = data.get(&item.key) {
                    files.insert(item.path.clone(), (value.clone(), item.mode));
                }
            }
        }
        None => {
            for (key, value) in data {
                files.insert(key, (value, None));
            }
        }
    }
}

/// Writes `contents` to `path` whole: a temporary file beside it, renamed into place.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o755)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, contents)?;
    set_mode(&temporary, mode)?;
    std::fs::rename(&temporary, path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

impl ServiceAccountVolumes {
    /// The volumes of the pods of `client`'s API, under `pods_dir`, timed by `clock`.
    pub fn new(client: Client, clock: Arc<dyn Clock>, pods_dir: impl Into<PathBuf>) -> Self {
        ServiceAccountVolumes {
            client,
            clock,
            pods_dir: pods_dir.into(),
            root_ca: None,
            api_server: None,
            held: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Writes `pem` as the `ca.crt` of `kube-root-ca.crt` sources instead of reading the
    /// ConfigMap.
    #[must_use]
    pub fn with_root_ca(mut self, pem: Option<String>) -> Self {
        self.root_ca = pem;
        self
    }

    /// Tells pods the API server is at `address` (`KUBERNETES_SERVICE_HOST`,
    /// `KUBERNETES_SERVICE_PORT`).
    #[must_use]
    pub fn with_api_server(mut self, address: Option<ApiServerAddress>) -> Self {
        self.api_server = address;
        self
    }

    /// The directory of the pod with uid `uid`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir.join(uid)
    }

    /// The directory of the projected volume `volume` of the pod with uid `uid`.
    pub fn volume_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(uid)
            .join("volumes")
            .join("kubernetes.io~projected")
            .join(volume)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes (or refreshes) the service-account token volumes of `pod`: each volume's
    /// directory, or why it could not be made, by volume name; and the variables its containers
    /// get (none when it has no such volume).
    pub async fn project(
        &self,
        pod: &Pod,
    ) -> (
        BTreeMap<String, Result<PathBuf, String>>,
        Vec<(String, String)>,
    ) {
        let mut volumes = BTreeMap::new();
        let Some(spec) = pod.spec.as_ref() else {
            return (volumes, Vec::new());
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() || !relative(&uid) {
            return (volumes, Vec::new());
        }
        for volume in spec.volumes.iter().flatten() {
            let Some(projected) = token_volume(volume) else {
                continue;
            };
            let outcome = if relative(&volume.name) {
                self.project_volume(pod, &uid, &volume.name, projected)
                    .await
            } else {
                Err(format!("invalid volume name {:?}", volume.name))
            };
            volumes.insert(volume.name.clone(), outcome);
        }
        if volumes.is_empty() {
            return (volumes, Vec::new());
        }
        let mut env = Vec::new();
        if let Some(address) = &self.api_server {
            env.push((SERVICE_HOST_ENV.to_owned(), address.host.clone()));
            env.push((SERVICE_PORT_ENV.to_owned(), address.port.to_string()));
        }
        if let Some(Ok(dir)) = volumes.values().find(|outcome| outcome.is_ok()) {
            env.push((
                SERVICE_ACCOUNT_DIR_ENV.to_owned(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        (volumes, env)
    }

    /// One volume: the token asked for when due, and then every file written.
    async fn project_volume(
        &self,
        pod: &Pod,
        uid: &str,
        volume: &str,
        projected: &ProjectedVolumeSource,
    ) -> Result<PathBuf, String> {
        let dir = self.volume_dir(uid, volume);
        let key = (uid.to_owned(), volume.to_owned());
        let now = self.clock.now();
        let held = self.held().get(&key).cloned();
        let present = std::fs::metadata(&dir).is_ok();
        if let Some(held) = &held
            && now < held.refresh_at
            && present
        {
            return Ok(dir);
        }
        let token = match self.request_token(pod, uid, projected).await {
            Ok(token) => token,
            Err(message) => {
                // Kubelet keeps a token it cannot renew until it expires.
                return match held {
                    Some(held) if now < held.expires_at && present => Ok(dir),
                    _ => Err(message),
                };
            }
        };
        let (text, expires_at) = token;
        self.write_volume(pod, &dir, projected, &text)
            .await
            .map_err(|error| format!("cannot write {}: {error}", dir.display()))?;
        // Kubelet's rule: again after 80% of the lifetime, and at least every 24 hours.
        let lifetime = expires_at.duration_since(now).as_secs().max(0);
        let max_age = i64::try_from(MAX_TOKEN_AGE.as_secs()).unwrap_or(i64::MAX);
        let refresh = SignedDuration::from_secs((lifetime.saturating_mul(4) / 5).min(max_age));
        let refresh_at = now.checked_add(refresh).unwrap_or(expires_at);
        self.held().insert(
            key,
            Held {
                refresh_at,
                expires_at,
            },
        );
        Ok(dir)
    }

    /// A token for the pod's account, bound to the pod, as its volume's source asks.
    async fn request_token(
        &self,
        pod: &Pod,
        uid: &str,
        projected: &ProjectedVolumeSource,
    ) -> Result<(String, Timestamp), String> {
        let Some(source) = projected
            .sources
            .iter()
            .flatten()
            .find_map(|source| source.service_account_token.as_ref())
        else {
            return Err("the volume has no serviceAccountToken source".to_owned());
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.service_account_name.as_deref())
            .filter(|name| !name.is_empty())
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: source
                    .audience
                    .iter()
                    .filter(|audience| !audience.is_empty())
                    .cloned()
                    .collect(),
                expiration_seconds: Some(
                    source
                        .expiration_seconds
                        .unwrap_or(DEFAULT_EXPIRATION_SECONDS),
                ),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: pod.metadata.name.clone(),
                    uid: Some(uid.to_owned()),
                }),
            },
            ..TokenRequest::default()
        };
        let answer = self
            .client
            .create_token(namespace, account, &request)
            .await
            .map_err(|error| {
                format!("failed to fetch token for service account {namespace}/{account}: {error}")
            })?;
        let status = answer
            .status
            .filter(|status| !status.token.is_empty())
            .ok_or_else(|| {
                format!("the API server sent no token for service account {namespace}/{account}")
            })?;
        Ok((status.token, status.expiration_timestamp.0))
    }

    /// Writes every file of the volume into `dir`.
    async fn write_volume(
        &self,
        pod: &Pod,
        dir: &Path,
        projected: &ProjectedVolumeSource,
        token: &str,
    ) -> std::io::Result<()> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut files: BTreeMap<String, (Vec<u8>, Option<i32>)> = BTreeMap::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token_source) = &source.service_account_token {
                files.insert(token_source.path.clone(), (token.as_bytes().to_vec(), None));
            }
            if let Some(config_map) = &source.config_map {
                let mut data = if config_map.name
                    == crate::api::admission::service_account::ROOT_CA_CONFIG_MAP
                    && let Some(pem) = &self.root_ca
                {
                    Some(BTreeMap::from([(
                        "ca.crt".to_owned(),
                        pem.as_bytes().to_vec(),
                    )]))
                } else {
                    None
                };
                if data.is_none() {
                    data = Api::<ConfigMap>::namespaced(self.client.clone(), &namespace)
                        .get_opt(&config_map.name)
                        .await
                        .ok()
                        .flatten()
                        .map(|map| {
                            map.data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(key, value)| (key, value.into_bytes()))
                                .chain(
                                    map.binary_data
                                        .unwrap_or_default()
                                        .into_iter()
                                        .map(|(key, value)| (key, value.0)),
                                )
                                .collect()
                        });
                }
                if let Some(data) = data {
                    pick(data, config_map.items.as_ref(), &mut files);
                }
            }
            if let Some(secret) = &source.secret {
                let data = Api::<Secret>::namespaced(self.client.clone(), &namespace)
                    .get_opt(&secret.name)
                    .await
                    .ok()
                    .flatten()
                    .map(|secret| {
                        secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(key, value)| (key, value.0))
                            .collect()
                    });
                if let Some(data) = data {
                    pick(data, secret.items.as_ref(), &mut files);
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let Some(field) = &item.field_ref else {
                        continue;
                    };
                    if let Some(value) = field_value(pod, &PodContext::default(), &field.field_path)
                    {
                        files.insert(item.path.clone(), (value.into_bytes(), item.mode));
                    }
                }
            }
        }
        let default_mode = projected
            .default_mode
            .and_then(|mode| u32::try_from(mode).ok())
            .unwrap_or(DEFAULT_FILE_MODE);
        std::fs::create_dir_all(dir)?;
        set_mode(dir, 0o755)?;
        for (path, (contents, mode)) in files {
            if !relative(&path) {
                continue;
            }
            let mode = mode
                .and_then(|mode| u32::try_from(mode).ok())
                .unwrap_or(default_mode);
            write_atomically(&dir.join(path), &contents, mode)?;
        }
        Ok(())
    }

    /// Removes the directory of the pod with uid `uid` and forgets its tokens.
    pub fn remove(&self, uid: &str) {
        self.held().retain(|(pod, _), _| pod != uid);
        if relative(uid) {
            let dir = self.pod_dir(uid);
            if let Err(error) = std::fs::remove_dir_all(&dir)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("node agent: removing {}: {error}", dir.display());
            }
        }
    }

    /// Removes the directories of the pods `wanted` does not want (housekeeping: pods gone
    /// while the agent was away).
    pub fn retain(&self, wanted: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.pods_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !wanted(&uid) {
                self.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    use super::*;
    use crate::api::admission::service_account::TOKEN_MOUNT_PATH;
    use crate::api::{Api, DeleteParams, PostParams};
    use crate::clock::TokioClock;
    use crate::container_runtime::fake::FakeRuntime;
    use crate::container_runtime::{
        ContainerConfig, ContainerFilter, ContainerRuntime, ContainerStatus, ExecResult, LogLines,
        LogOptions, PodSandboxConfig, PodSandboxFilter, PodSandboxStatus, RuntimeError,
        RuntimeVersion,
    };
    use crate::controllers::token::{POD_NAME_EXTRA, SigningKey, TokenIssuer};
    use crate::node_agent::agent::{NodeAgent, NodeAgentConfig};
    use crate::node_agent::heartbeat::NodeConfig;
    use crate::store::MemoryStore;

    /// The fake runtime, keeping the config of every container created.
    #[derive(Clone, Debug)]
    struct Recording {
        inner: FakeRuntime,
        configs: Arc<Mutex<Vec<ContainerConfig>>>,
    }

    #[async_trait]
    impl ContainerRuntime for Recording {
        async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
            self.inner.version().await
        }
        async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
            self.inner.run_pod_sandbox(config).await
        }
        async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
            self.inner.stop_pod_sandbox(id).await
        }
        async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
            self.inner.remove_pod_sandbox(id).await
        }
        async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
            self.inner.pod_sandbox_status(id).await
        }
        async fn list_pod_sandboxes(
            &self,
            filter: &PodSandboxFilter,
        ) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
            self.inner.list_pod_sandboxes(filter).await
        }
        async fn create_container(
            &self,
            pod_sandbox_id: &str,
            config: &ContainerConfig,
            sandbox_config: &PodSandboxConfig,
        ) -> Result<String, RuntimeError> {
            self.configs.lock().unwrap().push(config.clone());
            self.inner
                .create_container(pod_sandbox_id, config, sandbox_config)
                .await
        }
        async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
            self.inner.start_container(id).await
        }
        async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
            self.inner.stop_container(id, grace).await
        }
        async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
            self.inner.remove_container(id).await
        }
        async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
            self.inner.container_status(id).await
        }
        async fn list_containers(
            &self,
            filter: &ContainerFilter,
        ) -> Result<Vec<ContainerStatus>, RuntimeError> {
            self.inner.list_containers(filter).await
        }
        async fn container_logs(
            &self,
            id: &str,
            options: &LogOptions,
        ) -> Result<LogLines, RuntimeError> {
            self.inner.container_logs(id, options).await
        }
        async fn exec_sync(
            &self,
            id: &str,
            command: &[String],
            timeout: Duration,
        ) -> Result<ExecResult, RuntimeError> {
            self.inner.exec_sync(id, command, timeout).await
        }
    }

    struct Setup {
        client: Client,
        issuer: TokenIssuer,
        runtime: Recording,
        dir: PathBuf,
        stop: tokio::sync::oneshot::Sender<()>,
        agent: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Setup {
        let clock = TokioClock::starting_at("2026-01-01T00:00:00Z".parse().unwrap());
        let client = Client::builder(MemoryStore::new())
            .clock(clock)
            .token_issuer(TokenIssuer::new(SigningKey::generate().unwrap()))
            .build();
        client.bootstrap().await.unwrap();
        let issuer = client.token_issuer().unwrap();
        let mut account = ServiceAccount::default();
        account.metadata.name = Some("default".into());
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("orchestra-sa-{}", uuid::Uuid::new_v4()));
        let node = NodeConfig::new(
            "node-1",
            BTreeMap::from([
                ("cpu".to_owned(), Quantity("4".to_owned())),
                ("memory".to_owned(), Quantity("8Gi".to_owned())),
                ("pods".to_owned(), Quantity("110".to_owned())),
            ]),
        );
        let mut config = NodeAgentConfig::new(node);
        config.resync = Duration::from_secs(5);
        config.pods_dir = Some(dir.clone());
        config.root_ca_pem = Some("-----BEGIN CERTIFICATE-----\nCA\n".to_owned());
        config.api_server = Some(ApiServerAddress {
            host: "127.0.0.1".to_owned(),
            port: 6443,
        });
        let runtime = Recording {
            inner: FakeRuntime::with_clock(Arc::new(clock)),
            configs: Arc::default(),
        };
        let agent = NodeAgent::new(client.clone(), config, Arc::new(runtime.clone()))
            .with_clock(Arc::new(clock));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(async move {
            agent
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Setup {
            client,
            issuer,
            runtime,
            dir,
            stop,
            agent,
        }
    }

    async fn create_pod(client: &Client, name: &str, account: &str) -> Pod {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "node-1", "serviceAccountName": account,
                     "containers": [{"name": "web", "image": "web:1"}]},
        }))
        .unwrap();
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..600 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} did not happen");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_volume_is_written_mounted_refreshed_and_removed() {
        let setup = start().await;
        let pod = create_pod(&setup.client, "web", "default").await;
        let uid = pod.metadata.uid.clone().unwrap();
        let volume = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .name
            .clone();
        let configs = setup.runtime.configs.clone();
        eventually("the container is created", || {
            !configs.lock().unwrap().is_empty()
        })
        .await;
        let dir = setup
            .dir
            .join(&uid)
            .join("volumes/kubernetes.io~projected")
            .join(&volume);

        // The files.
        let token = read(&dir.join("token"));
        let identity = setup.issuer.verifier().verify(&token, &[]).unwrap();
        assert_eq!(identity.username(), "system:serviceaccount:default:default");
        assert_eq!(
            identity.extra().get(POD_NAME_EXTRA),
            Some(&vec!["web".to_owned()])
        );
        assert_eq!(
            read(&dir.join("ca.crt")),
            "-----BEGIN CERTIFICATE-----\nCA\n"
        );
        assert_eq!(read(&dir.join("namespace")), "default");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }

        // The mount and the variables.
        let config = configs.lock().unwrap()[0].clone();
        assert_eq!(config.mounts.len(), 1);
        assert_eq!(config.mounts[0].container_path, Path::new(TOKEN_MOUNT_PATH));
        assert_eq!(config.mounts[0].host_path, dir);
        assert!(config.mounts[0].read_only);
        let env: BTreeMap<String, String> = config.env.iter().cloned().collect();
        assert_eq!(env[SERVICE_HOST_ENV], "127.0.0.1");
        assert_eq!(env[SERVICE_PORT_ENV], "6443");
        assert_eq!(env[SERVICE_ACCOUNT_DIR_ENV], dir.to_string_lossy());

        // Refreshed once 80% of its 3607 s have passed (2885 s), not before.
        tokio::time::sleep(Duration::from_secs(2800)).await;
        assert_eq!(read(&dir.join("token")), token);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let refreshed = read(&dir.join("token"));
        assert_ne!(refreshed, token);
        setup.issuer.verifier().verify(&refreshed, &[]).unwrap();

        // Removed with the pod.
        Api::<Pod>::namespaced(setup.client.clone(), "default")
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        let pod_dir = setup.dir.join(&uid);
        eventually("the pod's directory is removed", || !pod_dir.exists()).await;

        let _ = setup.stop.send(());
        setup.agent.await.unwrap();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_token_the_container_waits_with_a_config_error() {
        let setup = start().await;
        create_pod(&setup.client, "ghostly", "ghost").await;
        let pods = Api::<Pod>::namespaced(setup.client.clone(), "default");
        let mut waiting = None;
        for _ in 0..600 {
            let pod = pods.get("ghostly").await.unwrap();
            waiting = pod
                .status
                .and_then(|status| status.container_statuses)
                .and_then(|statuses| statuses.into_iter().next())
                .and_then(|status| status.state)
                .and_then(|state| state.waiting);
            if waiting.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let waiting = waiting.unwrap();
        assert_eq!(
            waiting.reason.as_deref(),
            Some("CreateContainerConfigError")
        );
        let message = waiting.message.unwrap_or_default();
        assert!(message.contains("failed to fetch token"), "{message}");
        assert!(setup.runtime.configs.lock().unwrap().is_empty());

        let _ = setup.stop.send(());
        setup.agent.await.unwrap();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }
}
