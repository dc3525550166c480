//! The endpoints controller: every Service with a selector gets an Endpoints object of the same
//! name listing the addresses of the pods it selects (Kubernetes' `pkg/controller/endpoint`).
//!
//! For each Service whose `spec.selector` is set, [`EndpointsController`] keeps an Endpoints
//! object in the Service's namespace, of the Service's name, whose subsets hold:
//!
//! - one address per selected pod that has an IP (`status.podIPs`, the one of the Service's IP
//!   family), with the pod's `nodeName`, a `targetRef` to the pod, and the pod's
//!   `spec.hostname` when its `spec.subdomain` names the Service;
//! - ready pods (condition `Ready=True`) in `addresses`, the others in `notReadyAddresses`; with
//!   `spec.publishNotReadyAddresses` every pod goes in `addresses`;
//! - finished pods (`Succeeded`, `Failed`) left out, and terminating pods (`deletionTimestamp`)
//!   too unless `publishNotReadyAddresses` is set (Kubernetes' `ShouldPodBeInEndpoints`);
//! - ports from the Service's ports, each named `targetPort` resolved per pod against its
//!   containers' ports (by name and protocol, sidecar init containers included): a pod that has
//!   no such port is left out of that port's subset ([`find_port`]);
//! - packed as Kubernetes packs them ([`repack_subsets`]): addresses offering the same set of
//!   ports share a subset, addresses sorted by IP.
//!
//! Headless services (`clusterIP: None`) get Endpoints too, labelled
//! `service.kubernetes.io/headless`; a headless service without ports lists its pods with no
//! ports. The Endpoints carry the Service's labels. More than [`MAX_ENDPOINTS`] addresses are
//! truncated and annotated `endpoints.kubernetes.io/over-capacity: truncated`.
//!
//! Services without a selector are left alone: their Endpoints are the user's. An Endpoints
//! object is written only when what it should hold differs from what it holds, so a pod change
//! that does not move any address (an annotation, a label the selector ignores) writes nothing.
//!
//! When a Service is deleted its Endpoints are deleted, explicitly, as Kubernetes does (they carry
//! no owner reference). When the controller starts it also deletes the Endpoints left without a
//! Service while it was not running (except leader-election records, annotated
//! `control-plane.alpha.kubernetes.io/leader`), as Kubernetes' `checkLeftoverEndpoints` does.
//!
//! # How it runs
//!
//! A [`Controller`] of Services, which also watches Pods (a pod maps to the Services of its
//! namespace whose selector matches it, and to the Endpoints that list it, so that a pod that
//! leaves a selector is removed) and Endpoints (a change to an Endpoints object, by anyone,
//! reconciles its Service again). Deleted Services are noticed by a watch of their own, whose
//! deletions go through a second work queue; each deletion checks with the API that the Service
//! is really gone and deletes the Endpoints only if they did not change meanwhile.
//!
//! # Differences from Kubernetes
//!
//! - The `endpoints.kubernetes.io/last-change-trigger-time` annotation is not written.
//! - Subsets and the ports in them are sorted by their contents rather than by Kubernetes' hash
//!   of them: the order is deterministic, but not the one Kubernetes would write.
//! - A Service with an unallocated `clusterIP` (empty) is not labelled headless: Orchestra may run
//!   without a cluster IP allocator, and only `None` means headless.
//! - Leader-election records are never deleted, not even when a Service of their name is.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client, PostParams};
//! use orchestra_core::controllers::endpoints::EndpointsController;
//! use orchestra_core::k8s::api::core::v1::{Endpoints, Service, ServicePort, ServiceSpec};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let controller = EndpointsController::new(client.clone());
//! let running = tokio::spawn(controller.run(async move {
//!     let _ = stopped.await;
//! }));
//!
//! let mut service = Service::default();
//! service.metadata.name = Some("web".into());
//! service.spec = Some(ServiceSpec {
//!     selector: Some([("app".to_owned(), "web".to_owned())].into()),
//!     ports: Some(vec![ServicePort { port: 80, ..ServicePort::default() }]),
//!     ..ServiceSpec::default()
//! });
//! Api::<Service>::namespaced(client.clone(), "default")
//!     .create(&PostParams::default(), &service)
//!     .await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! let endpoints = Api::<Endpoints>::namespaced(client, "default").get("web").await?;
//! assert!(endpoints.subsets.is_none(), "no pods yet");
//!
//! let _ = stop.send(());
//! running.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    ContainerPort, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod,
    Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Preconditions};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::pods;

use crate::api::{Api, Client, DeleteParams, ListParams, PostParams};
use crate::resource::Resource;
use crate::runtime::controller::Controller;
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::{WatcherConfig, WatcherEvent, watcher};
use crate::runtime::{Action, WorkQueue};
use crate::selector::Selector;
use crate::status::{StatusError, StatusReason};

/// The label of the Endpoints of a headless Service.
pub const HEADLESS_SERVICE_LABEL: &str = "service.kubernetes.io/headless";

/// The annotation of Endpoints whose addresses were truncated to [`MAX_ENDPOINTS`].
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// The annotation of Endpoints used as leader-election records (never deleted by this
/// controller).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// How many addresses one Endpoints object holds at most (Kubernetes' `maxCapacity`).
pub const MAX_ENDPOINTS: usize = 1000;

/// How many Services are synced at once by default (Kubernetes' `--concurrent-endpoint-syncs`).
pub const DEFAULT_CONCURRENCY: usize = 5;

/// A sync of the endpoints controller failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointsError {
    /// A request to the API failed.
    #[error("cannot {action} endpoints {namespace}/{name}: {source}")]
    Api {
        /// What the controller was doing: `create`, `update`, `read`, `delete`.
        action: &'static str,
        /// The namespace of the Endpoints.
        namespace: String,
        /// The name of the Endpoints (and of their Service).
        name: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// The Endpoints changed between the check that their Service is gone and their deletion
    /// (checked again).
    #[error("endpoints {namespace}/{name} changed while being deleted")]
    Changed {
        /// The namespace of the Endpoints.
        namespace: String,
        /// The name of the Endpoints.
        name: String,
    },
}

fn api_error(
    action: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(StatusError) -> EndpointsError {
    let namespace = namespace.to_owned();
    let name = name.to_owned();
    move |source| EndpointsError::Api {
        action,
        namespace,
        name,
        source,
    }
}

/// Keeps the Endpoints of every Service with a selector: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct EndpointsController {
    client: Client,
    concurrency: usize,
}

impl EndpointsController {
    /// The controller of the Services `client` serves.
    pub fn new(client: Client) -> EndpointsController {
        EndpointsController {
            client,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// How many Services are synced at once ([`DEFAULT_CONCURRENCY`] by default).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> EndpointsController {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs the controller until `shutdown` resolves (then returns once the syncs in flight are
    /// done).
    pub async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let shutdown = shutdown.shared();
        let client = self.client;
        let config = WatcherConfig::default();
        let services: Api<Service> = Api::all(client.clone());
        let controller = Controller::new(services.clone(), config.clone());
        let services_cache = controller.store();
        let (controller, endpoints_cache) = controller.watches_with(
            Api::<Endpoints>::all(client.clone()),
            config.clone(),
            |endpoints: &Endpoints| vec![ObjectRef::from_obj(endpoints)],
        );
        let listed = endpoints_cache.clone();
        let (controller, pods_cache) =
            controller.watches_with(Api::<Pod>::all(client.clone()), config, move |pod: &Pod| {
                services_for_pod(&services_cache, &listed, pod)
            });
        let context = Arc::new(SyncContext {
            client: client.clone(),
            pods: pods_cache,
            endpoints: endpoints_cache,
        });
        let sync =
            controller
                .concurrency(self.concurrency)
                .run(sync_service, context, shutdown.clone());

        let deletions = WorkQueue::new();
        let (synced, first_list) = oneshot::channel();
        let feed = feed_deletions(services, deletions.clone(), Some(synced), shutdown.clone());
        let leftovers = queue_leftovers(
            client.clone(),
            deletions.clone(),
            first_list,
            shutdown.clone(),
        );
        let delete = deletions.run_until(
            2,
            |key: ObjectRef| delete_orphaned(client.clone(), key),
            shutdown,
        );
        tokio::join!(sync, feed, leftovers, delete);
    }
}

/// What the sync of a Service reads.
struct SyncContext {
    client: Client,
    pods: Reader<Pod>,
    endpoints: Reader<Endpoints>,
}

/// The selector of a Service, `None` when it has none (its Endpoints are the user's).
fn selector_of(service: &Service) -> Option<Selector> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|labels| !labels.is_empty())
        .map(Selector::from_validated_map)
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

fn labels_of(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    meta.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// The Services to sync when `pod` changes: those of its namespace whose selector matches it,
/// and those whose Endpoints list it (it may have left their selector).
fn services_for_pod(
    services: &Reader<Service>,
    endpoints: &Reader<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let labels = labels_of(&pod.metadata);
    let mut keys = BTreeSet::new();
    for service in services.state() {
        if service.metadata.namespace.as_deref() == Some(namespace)
            && selector_of(&service).is_some_and(|selector| selector.matches(labels))
        {
            keys.insert(ObjectRef::from_obj(service.as_ref()));
        }
    }
    for listing in endpoints.state() {
        if listing.metadata.namespace.as_deref() == Some(namespace) && lists_pod(&listing, name) {
            keys.insert(ObjectRef::from_obj(listing.as_ref()));
        }
    }
    keys.into_iter().collect()
}

/// Whether some address of `endpoints` refers to the pod `name`.
fn lists_pod(endpoints: &Endpoints, name: &str) -> bool {
    endpoints.subsets.iter().flatten().any(|subset| {
        subset
            .addresses
            .iter()
            .chain(subset.not_ready_addresses.iter())
            .flatten()
            .any(|address| {
                address.target_ref.as_ref().is_some_and(|target| {
                    target.kind.as_deref() == Some("Pod") && target.name.as_deref() == Some(name)
                })
            })
    })
}

/// Syncs the Endpoints of one Service.
async fn sync_service(
    service: Arc<Service>,
    context: Arc<SyncContext>,
) -> Result<Action, EndpointsError> {
    let Some(selector) = selector_of(&service) else {
        return Ok(Action::await_change());
    };
    let key = ObjectRef::from_obj(service.as_ref());
    let Some(namespace) = key.namespace.clone() else {
        return Ok(Action::await_change());
    };
    let name = key.name.clone();
    let pods: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace.as_str())
                && selector.matches(labels_of(&pod.metadata))
        })
        .collect();
    let mut subsets = endpoint_subsets(&service, pods.iter().map(AsRef::as_ref));
    let truncated = truncate_subsets(&mut subsets);
    let mut labels = labels_of(&service.metadata).clone();
    if is_headless(&service) {
        labels.insert(HEADLESS_SERVICE_LABEL.to_owned(), String::new());
    } else {
        labels.remove(HEADLESS_SERVICE_LABEL);
    }
    let api: Api<Endpoints> = Api::namespaced(context.client.clone(), &namespace);
    let subsets = (!subsets.is_empty()).then_some(subsets);

    let Some(current) = context.endpoints.get(&key) else {
        let annotations = truncated.then(|| {
            BTreeMap::from([(OVER_CAPACITY_ANNOTATION.to_owned(), "truncated".to_owned())])
        });
        let endpoints = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: (!labels.is_empty()).then_some(labels),
                annotations,
                ..ObjectMeta::default()
            },
            subsets,
        };
        return match api.create(&PostParams::default(), &endpoints).await {
            Ok(_) => Ok(Action::await_change()),
            // The cache is behind: the watch event of the existing object syncs the Service again.
            Err(error) if error.reason == StatusReason::AlreadyExists => Ok(Action::await_change()),
            Err(error) => Err(api_error("create", &namespace, &name)(error)),
        };
    };

    let annotated =
        current.metadata.annotations.as_ref().is_some_and(|a| {
            a.get(OVER_CAPACITY_ANNOTATION).map(String::as_str) == Some("truncated")
        });
    if normalized(current.subsets.as_deref()) == subsets.clone().unwrap_or_default()
        && labels_of(&current.metadata) == &labels
        && annotated == truncated
    {
        return Ok(Action::await_change());
    }
    let mut updated = current.as_ref().clone();
    updated.subsets = subsets;
    updated.metadata.labels = (!labels.is_empty()).then_some(labels);
    let mut annotations = updated.metadata.annotations.take().unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_owned(), "truncated".to_owned());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    updated.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    api.replace(&name, &PostParams::default(), &updated)
        .await
        .map_err(api_error("update", &namespace, &name))?;
    Ok(Action::await_change())
}

/// Subsets as the controller writes them, for comparison with stored ones: empty lists and
/// empty strings absent, protocols defaulted.
fn normalized(subsets: Option<&[EndpointSubset]>) -> Vec<EndpointSubset> {
    fn address(mut address: EndpointAddress) -> EndpointAddress {
        address.hostname = address.hostname.filter(|h| !h.is_empty());
        address.node_name = address.node_name.filter(|n| !n.is_empty());
        address
    }
    fn list(addresses: Option<Vec<EndpointAddress>>) -> Option<Vec<EndpointAddress>> {
        addresses
            .filter(|list| !list.is_empty())
            .map(|list| list.into_iter().map(address).collect())
    }
    subsets
        .unwrap_or_default()
        .iter()
        .cloned()
        .map(|subset| EndpointSubset {
            addresses: list(subset.addresses),
            not_ready_addresses: list(subset.not_ready_addresses),
            ports: subset.ports.filter(|ports| !ports.is_empty()).map(|ports| {
                ports
                    .into_iter()
                    .map(|mut port| {
                        port.name = port.name.filter(|n| !n.is_empty());
                        port.protocol.get_or_insert_with(|| "TCP".to_owned());
                        port
                    })
                    .collect()
            }),
        })
        .collect()
}

/// Whether a Service is headless (`clusterIP: None`).
fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref())
        == Some("None")
}

/// Whether a pod has finished (phase `Succeeded` or `Failed`).
fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(pods::phase(pod), "Succeeded" | "Failed")
}

/// Whether a pod belongs in endpoints at all (Kubernetes' `ShouldPodBeInEndpoints`): it has not
/// finished, it has an IP, and it is not terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_pod_terminal(pod) {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// A pod's IPs: `status.podIPs`, or `status.podIP` when the list is empty.
fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

fn is_ipv6(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|address| address.is_ipv6())
}

/// The pod's address for the Service: its IP of the Service's family (the first of
/// `spec.ipFamilies`, else that of the cluster IP, else that of the pod's first IP), its node and
/// a reference to it (Kubernetes' `podToEndpointAddressForService`).
fn pod_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let ips = pod_ips(pod);
    let spec = service.spec.as_ref();
    let family_ipv6 = match spec
        .and_then(|spec| spec.ip_families.as_ref())
        .and_then(|families| families.first())
    {
        Some(family) => family == "IPv6",
        None => match spec
            .and_then(|spec| spec.cluster_ip.as_deref())
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            Some(cluster_ip) => is_ipv6(cluster_ip),
            None => ips.first().is_some_and(|ip| is_ipv6(ip)),
        },
    };
    let ip = ips.into_iter().find(|ip| is_ipv6(ip) == family_ipv6)?;
    Some(EndpointAddress {
        ip: ip.to_owned(),
        hostname: None,
        node_name: pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .filter(|node| !node.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    })
}

/// Whether the pod's hostname goes in its address: it has one, and its subdomain is the
/// Service's name in the Service's namespace (Kubernetes' `ShouldSetHostname`).
fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.is_some()
        && spec.subdomain == service.metadata.name
        && pod.metadata.namespace == service.metadata.namespace
}

/// The container port a Service port reaches on `pod` (Kubernetes' `FindPort`): a numeric
/// `targetPort` as it is, a named one looked up among the ports of the pod's containers (and
/// sidecar init containers) by name and protocol; `None` when the pod has no such port.
///
/// # Examples
///
/// ```
/// use orchestra_core::controllers::endpoints::find_port;
/// use orchestra_core::k8s::api::core::v1::{Container, ContainerPort, Pod, PodSpec, ServicePort};
/// use orchestra_core::k8s::apimachinery::pkg::util::intstr::IntOrString;
///
/// let port = ServicePort {
///     port: 80,
///     target_port: Some(IntOrString::String("http".into())),
///     ..ServicePort::default()
/// };
/// let mut pod = Pod::default();
/// assert_eq!(find_port(&pod, &port), None);
/// pod.spec = Some(PodSpec {
///     containers: vec![Container {
///         name: "web".into(),
///         ports: Some(vec![ContainerPort {
///             name: Some("http".into()),
///             container_port: 8080,
///             ..ContainerPort::default()
///         }]),
///         ..Container::default()
///     }],
///     ..PodSpec::default()
/// });
/// assert_eq!(find_port(&pod, &port), Some(8080));
/// ```
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(0)) => return Some(port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) if name.is_empty() => return Some(port.port),
        Some(IntOrString::String(name)) => name,
    };
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|container| container.restart_policy.as_deref() == Some("Always"));
    let matches = |candidate: &&ContainerPort| {
        candidate.name.as_deref() == Some(name.as_str())
            && candidate.protocol.as_deref().unwrap_or("TCP") == protocol
    };
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|container| container.ports.iter().flatten())
        .find(matches)
        .map(|candidate| candidate.container_port)
}

/// The endpoint port of a Service port reached on `number`.
fn endpoint_port(port: &ServicePort, number: i32) -> EndpointPort {
    EndpointPort {
        name: port.name.clone().filter(|name| !name.is_empty()),
        port: number,
        protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
        app_protocol: port.app_protocol.clone(),
    }
}

/// The subsets of a Service's Endpoints for these pods (those its selector matches), as the
/// controller writes them: see the [module documentation](self).
///
/// # Examples
///
/// ```
/// use orchestra_core::controllers::endpoints::endpoint_subsets;
/// use orchestra_core::k8s::api::core::v1::{
///     Pod, PodCondition, PodStatus, Service, ServicePort, ServiceSpec,
/// };
///
/// let service = Service {
///     spec: Some(ServiceSpec {
///         ports: Some(vec![ServicePort { port: 80, ..ServicePort::default() }]),
///         ..ServiceSpec::default()
///     }),
///     ..Service::default()
/// };
/// let pod = |name: &str, ip: &str, ready: bool| {
///     let mut pod = Pod::default();
///     pod.metadata.name = Some(name.into());
///     pod.status = Some(PodStatus {
///         pod_ip: Some(ip.into()),
///         conditions: Some(vec![PodCondition {
///             type_: "Ready".into(),
///             status: if ready { "True" } else { "False" }.into(),
///             ..PodCondition::default()
///         }]),
///         ..PodStatus::default()
///     });
///     pod
/// };
/// let pods = [pod("b", "10.0.0.2", true), pod("a", "10.0.0.1", true), pod("c", "10.0.0.3", false)];
/// let subsets = endpoint_subsets(&service, &pods);
/// assert_eq!(subsets.len(), 1);
/// let ready: Vec<&str> = subsets[0].addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
/// assert_eq!(ready, ["10.0.0.1", "10.0.0.2"]);
/// assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.3");
/// assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 80);
/// ```
pub fn endpoint_subsets<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<EndpointSubset> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let headless = is_headless(service);
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(mut address) = pod_address(service, pod) else {
            continue;
        };
        if should_set_hostname(pod, service) {
            address.hostname = pod.spec.as_ref().and_then(|spec| spec.hostname.clone());
        }
        let ready = publish_not_ready || pods::is_ready(pod);
        let subset = |address: EndpointAddress, ports: Option<Vec<EndpointPort>>| {
            if ready {
                EndpointSubset {
                    addresses: Some(vec![address]),
                    not_ready_addresses: None,
                    ports,
                }
            } else {
                EndpointSubset {
                    addresses: None,
                    not_ready_addresses: Some(vec![address]),
                    ports,
                }
            }
        };
        if ports.is_empty() {
            // Headless services may have no ports: their pods are listed without any.
            if headless {
                subsets.push(subset(address, None));
            }
            continue;
        }
        for port in ports {
            if let Some(number) = find_port(pod, port) {
                subsets.push(subset(
                    address.clone(),
                    Some(vec![endpoint_port(port, number)]),
                ));
            }
        }
    }
    repack_subsets(subsets)
}

/// An address's identity when repacking: its IP and the uid of what it refers to.
type AddressKey = (String, String);

/// An endpoint port as a sortable key: name, number, protocol, application protocol. Port `-1`
/// stands for "no ports".
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

fn address_key(address: &EndpointAddress) -> AddressKey {
    (
        address.ip.clone(),
        address
            .target_ref
            .as_ref()
            .and_then(|target| target.uid.clone())
            .unwrap_or_default(),
    )
}

/// Regroups subsets as Kubernetes' `RepackSubsets` does: each address offering the same set of
/// ports goes in one subset with them; an address ready on some port is ready; addresses are
/// sorted by IP (then uid), ports by name and number, subsets by their addresses.
pub fn repack_subsets(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for subset in subsets {
        let ports: Vec<PortKey> = match subset.ports.as_deref() {
            None | Some([]) => vec![(None, -1, None, None)],
            Some(ports) => ports
                .iter()
                .map(|port| {
                    (
                        port.name.clone().filter(|name| !name.is_empty()),
                        port.port,
                        port.protocol.clone(),
                        port.app_protocol.clone(),
                    )
                })
                .collect(),
        };
        let listed = subset
            .addresses
            .into_iter()
            .flatten()
            .map(|address| (address, true))
            .chain(
                subset
                    .not_ready_addresses
                    .into_iter()
                    .flatten()
                    .map(|address| (address, false)),
            );
        for (address, ready) in listed {
            let key = address_key(&address);
            addresses.entry(key.clone()).or_insert(address);
            for port in &ports {
                let readiness = by_port
                    .entry(port.clone())
                    .or_default()
                    .entry(key.clone())
                    .or_insert(ready);
                *readiness |= ready;
            }
        }
    }
    // Addresses (with readiness) → the ports they all offer.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, members) in by_port {
        let group = groups.entry(members.into_iter().collect()).or_default();
        if port.1 >= 0 {
            group.push(port);
        }
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) =
                members.into_iter().partition(|(_, ready)| *ready);
            let collect = |list: Vec<(AddressKey, bool)>| {
                let list: Vec<EndpointAddress> = list
                    .into_iter()
                    .filter_map(|(key, _)| addresses.get(&key).cloned())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|(name, port, protocol, app_protocol)| EndpointPort {
                    name,
                    port,
                    protocol,
                    app_protocol,
                })
                .collect();
            EndpointSubset {
                addresses: collect(ready),
                not_ready_addresses: collect(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Truncates subsets holding more than [`MAX_ENDPOINTS`] addresses as Kubernetes'
/// `truncateEndpoints` does (not-ready addresses first, each subset in proportion); whether it
/// truncated.
fn truncate_subsets(subsets: &mut Vec<EndpointSubset>) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_ENDPOINTS {
        return false;
    }
    let truncate_ready = total_ready > MAX_ENDPOINTS;
    let (max, total) = if truncate_ready {
        (MAX_ENDPOINTS, total_ready)
    } else {
        (MAX_ENDPOINTS - total_ready, total_not_ready)
    };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let here = count(list);
        let share = here
            .saturating_mul(max)
            .div_ceil(total.max(1))
            .min(room)
            .min(here);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        room -= share;
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    for subset in subsets.iter_mut() {
        if subset.addresses.as_ref().is_some_and(Vec::is_empty) {
            subset.addresses = None;
        }
        if subset
            .not_ready_addresses
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            subset.not_ready_addresses = None;
        }
    }
    subsets.retain(|subset| subset.addresses.is_some() || subset.not_ready_addresses.is_some());
    true
}

/// Feeds `queue` with the references of the objects of `api` that go away: those deleted while
/// watching, and those missing from a re-list that were there before. `synced` receives the
/// references listed first. Ends when `shutdown` resolves.
///
/// Used where a controller must act on a deletion (the [`Controller`] reconciles only objects
/// that exist): the Endpoints of a deleted Service, the token secrets of a deleted account.
pub(crate) async fn feed_deletions<K, S>(
    api: Api<K>,
    queue: WorkQueue<ObjectRef>,
    mut synced: Option<oneshot::Sender<BTreeSet<ObjectRef>>>,
    shutdown: S,
) where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Send + Sync,
    S: Future<Output = ()>,
{
    let mut events = pin!(watcher(api, WatcherConfig::default()));
    let mut shutdown = pin!(shutdown);
    let mut known: BTreeSet<ObjectRef> = BTreeSet::new();
    let mut listing: Option<BTreeSet<ObjectRef>> = None;
    loop {
        let event = tokio::select! {
            biased;
            () = &mut shutdown => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            // The watcher retries by itself.
            Some(Err(_)) => {}
            Some(Ok(WatcherEvent::Init)) => listing = Some(BTreeSet::new()),
            Some(Ok(WatcherEvent::InitApply(object))) => {
                listing
                    .get_or_insert_with(BTreeSet::new)
                    .insert(ObjectRef::from_obj(&object));
            }
            Some(Ok(WatcherEvent::InitDone)) => {
                let listed = listing.take().unwrap_or_default();
                for gone in known.difference(&listed) {
                    queue.add(gone.clone());
                }
                known = listed;
                if let Some(synced) = synced.take() {
                    let _ = synced.send(known.clone());
                }
            }
            Some(Ok(WatcherEvent::Apply(object))) => {
                known.insert(ObjectRef::from_obj(&object));
            }
            Some(Ok(WatcherEvent::Delete(object))) => {
                let key = ObjectRef::from_obj(&object);
                known.remove(&key);
                queue.add(key);
            }
        }
    }
}

/// Once the Services are first listed, queues the Endpoints that have no Service (left over from
/// a time the controller was not running), leader-election records excepted.
async fn queue_leftovers<S>(
    client: Client,
    deletions: WorkQueue<ObjectRef>,
    first_list: oneshot::Receiver<BTreeSet<ObjectRef>>,
    shutdown: S,
) where
    S: Future<Output = ()>,
{
    let mut shutdown = pin!(shutdown);
    let services = tokio::select! {
        biased;
        () = &mut shutdown => return,
        services = first_list => match services {
            Ok(services) => services,
            Err(_) => return,
        },
    };
    let api: Api<Endpoints> = Api::all(client);
    let params = ListParams::default();
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        let listed = tokio::select! {
            biased;
            () = &mut shutdown => return,
            listed = api.list(&params) => listed,
        };
        match listed {
            Ok(list) => {
                for endpoints in list.items {
                    let key = ObjectRef::from_obj(&endpoints);
                    if !services.contains(&key) && !is_leader_record(&endpoints) {
                        deletions.add(key);
                    }
                }
                return;
            }
            Err(_) => {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

fn is_leader_record(endpoints: &Endpoints) -> bool {
    endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(LEADER_ANNOTATION))
}

/// Deletes the Endpoints `key` if their Service is gone (asking the API, not a cache) and they
/// did not change since that was checked.
async fn delete_orphaned(client: Client, key: ObjectRef) -> Result<Action, EndpointsError> {
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(Action::await_change());
    };
    let name = key.name.as_str();
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    if services
        .get_opt(name)
        .await
        .map_err(api_error("read", namespace, name))?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(client, namespace);
    let Some(endpoints) = api
        .get_opt(name)
        .await
        .map_err(api_error("read", namespace, name))?
    else {
        return Ok(Action::await_change());
    };
    if is_leader_record(&endpoints) {
        return Ok(Action::await_change());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: endpoints.metadata.uid.clone(),
            resource_version: endpoints.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(error) if error.is_not_found() => Ok(Action::await_change()),
        Err(error) if error.is_conflict() => Err(EndpointsError::Changed {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Err(error) => Err(api_error("delete", namespace, name)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(ip: &str, uid: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                uid: Some(uid.into()),
                ..ObjectReference::default()
            }),
            ..EndpointAddress::default()
        }
    }

    fn port(name: &str, number: i32) -> EndpointPort {
        EndpointPort {
            name: Some(name.into()),
            port: number,
            protocol: Some("TCP".into()),
            app_protocol: None,
        }
    }

    fn subset(
        ready: &[(&str, &str)],
        not_ready: &[(&str, &str)],
        ports: &[EndpointPort],
    ) -> EndpointSubset {
        let list = |list: &[(&str, &str)]| {
            (!list.is_empty()).then(|| list.iter().map(|(ip, uid)| address(ip, uid)).collect())
        };
        EndpointSubset {
            addresses: list(ready),
            not_ready_addresses: list(not_ready),
            ports: (!ports.is_empty()).then(|| ports.to_vec()),
        }
    }

    #[test]
    fn repacking_groups_addresses_by_the_ports_they_offer() {
        let http = port("http", 8080);
        let metrics = port("metrics", 9090);
        let repacked = repack_subsets(vec![
            subset(&[("10.0.0.2", "b")], &[], std::slice::from_ref(&http)),
            subset(&[("10.0.0.1", "a")], &[], std::slice::from_ref(&http)),
            subset(&[("10.0.0.1", "a")], &[], std::slice::from_ref(&metrics)),
            subset(&[], &[("10.0.0.3", "c")], std::slice::from_ref(&http)),
            subset(&[("10.0.0.2", "b")], &[], std::slice::from_ref(&metrics)),
        ]);
        assert_eq!(
            repacked,
            vec![
                subset(&[("10.0.0.1", "a"), ("10.0.0.2", "b")], &[], &[metrics]),
                subset(
                    &[("10.0.0.1", "a"), ("10.0.0.2", "b")],
                    &[("10.0.0.3", "c")],
                    &[http]
                ),
            ]
        );
    }

    #[test]
    fn an_address_ready_on_one_port_is_ready() {
        let http = port("http", 8080);
        let repacked = repack_subsets(vec![
            subset(&[], &[("10.0.0.1", "a")], std::slice::from_ref(&http)),
            subset(&[("10.0.0.1", "a")], &[], std::slice::from_ref(&http)),
        ]);
        assert_eq!(repacked, vec![subset(&[("10.0.0.1", "a")], &[], &[http])]);
    }

    #[test]
    fn addresses_without_ports_are_kept() {
        let repacked = repack_subsets(vec![
            subset(&[("10.0.0.2", "b")], &[], &[]),
            subset(&[("10.0.0.1", "a")], &[], &[]),
        ]);
        assert_eq!(
            repacked,
            vec![subset(&[("10.0.0.1", "a"), ("10.0.0.2", "b")], &[], &[])]
        );
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let ready: Vec<(String, String)> = (0..900)
            .map(|i| (format!("10.0.{}.{}", i / 250, i % 250), format!("r{i}")))
            .collect();
        let not_ready: Vec<(String, String)> = (0..300)
            .map(|i| (format!("10.1.{}.{}", i / 250, i % 250), format!("n{i}")))
            .collect();
        fn as_refs(list: &[(String, String)]) -> Vec<(&str, &str)> {
            list.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
        }
        let mut subsets = vec![subset(
            &as_refs(&ready),
            &as_refs(&not_ready),
            &[port("http", 80)],
        )];
        assert!(truncate_subsets(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().map(Vec::len),
            Some(100)
        );

        let mut small = vec![subset(&[("10.0.0.1", "a")], &[], &[port("http", 80)])];
        assert!(!truncate_subsets(&mut small));
    }
}
