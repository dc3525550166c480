//! The endpoints controller against the in-process API: which pods a Service's Endpoints list,
//! where, on which ports, and that they are written only when that changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EndpointSubset, Endpoints, Pod, PodSpec, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use orchestra_core::api::{
    Admission, AdmissionRequest, Api, Client, DeleteParams, Operation, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::endpoints::{
    EndpointsController, HEADLESS_SERVICE_LABEL, LEADER_ANNOTATION,
};
use orchestra_core::patch::PatchType;
use orchestra_core::resource::{DynamicObject, ResourceExt};
use orchestra_core::status::StatusError;
use orchestra_core::store::MemoryStore;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

async fn client() -> Client {
    client_counting(Arc::default()).await
}

/// A client whose admission chain counts the writes of Endpoints it is asked to admit (so that
/// writes the API would find to change nothing are counted too).
async fn client_counting(writes: Arc<AtomicUsize>) -> Client {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
        .admission(CountEndpointsWrites(writes))
        .build();
    client.bootstrap().await.unwrap();
    client
}

#[derive(Debug)]
struct CountEndpointsWrites(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Admission for CountEndpointsWrites {
    fn name(&self) -> &str {
        "CountEndpointsWrites"
    }

    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        _object: &DynamicObject,
    ) -> Result<(), StatusError> {
        if request.resource.kind == "Endpoints" && request.operation != Operation::Delete {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A running controller, stopped (and awaited) by [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(client: &Client) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(EndpointsController::new(client.clone()).run(async move {
            let _ = stopped.await;
        }));
        Running { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the controller stops")
            .unwrap();
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("tier", "frontend")])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: (!selector.is_empty()).then(|| labels(selector)),
            ports: (!ports.is_empty()).then_some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(target),
        ..ServicePort::default()
    }
}

fn pod(name: &str, pod_labels: &[(&str, &str)], ports: &[(&str, i32, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(pod_labels)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "web".into(),
                image: Some("web:1".into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, number, protocol)| ContainerPort {
                            name: Some((*name).into()),
                            container_port: *number,
                            protocol: Some((*protocol).into()),
                            ..ContainerPort::default()
                        })
                        .collect(),
                ),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Creates a pod and gives it an IP and a readiness, as its node agent would.
async fn run_pod(pods: &Api<Pod>, pod: Pod, ip: &str, ready: bool) -> Pod {
    let name = pod.name_any();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_status(pods, &name, Some(ip), ready).await
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: Option<&str>, ready: bool) -> Pod {
    let mut status = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    pods.patch_status(
        name,
        &PatchParams::new(PatchType::Merge),
        &json!({ "status": status }),
    )
    .await
    .unwrap()
}

/// `(ready IPs, not-ready IPs, ports as name:number)` of each subset, in sorted order (the order
/// of subsets is not part of the contract).
type Shape = Vec<(Vec<String>, Vec<String>, Vec<String>)>;

fn shape(subsets: Option<&[EndpointSubset]>) -> Shape {
    subsets
        .unwrap_or_default()
        .iter()
        .map(|subset| {
            let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                list.iter().flatten().map(|a| a.ip.clone()).collect()
            };
            (
                ips(&subset.addresses),
                ips(&subset.not_ready_addresses),
                subset
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.clone().unwrap_or_default(), p.port))
                    .collect(),
            )
        })
        .collect::<Shape>()
        .tap_sort()
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Shape {
    fn tap_sort(mut self) -> Shape {
        self.sort();
        self
    }
}

fn subset(
    ready: &[&str],
    not_ready: &[&str],
    ports: &[&str],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    (owned(ready), owned(not_ready), owned(ports))
}

/// Waits (in paused time) until the Endpoints `name` have this shape.
async fn wait_for_shape(endpoints: &Api<Endpoints>, name: &str, want: &Shape) -> Endpoints {
    let mut last = None;
    for _ in 0..200 {
        if let Some(current) = endpoints.get_opt(name).await.unwrap() {
            if shape(current.subsets.as_deref()) == want.clone().tap_sort() {
                return current;
            }
            last = Some(current);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "endpoints {name} never became {want:?}; last: {:?}",
        last.map(|e| shape(e.subsets.as_deref()))
    );
}

async fn wait_until_gone(endpoints: &Api<Endpoints>, name: &str) {
    for _ in 0..200 {
        if endpoints.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("endpoints {name} were not deleted");
}

fn web_ports() -> Vec<ServicePort> {
    vec![port("http", 80, IntOrString::Int(8080))]
}

#[tokio::test(start_paused = true)]
async fn ready_and_not_ready_pods_split_as_readiness_changes() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    services
        .create(
            &PostParams::default(),
            &service("web", &[("app", "web")], web_ports()),
        )
        .await
        .unwrap();
    let a = run_pod(&pods, pod("a", &[("app", "web")], &[]), "10.0.0.1", true).await;
    run_pod(&pods, pod("b", &[("app", "web")], &[]), "10.0.0.2", false).await;
    // No IP yet: not listed at all.
    pods.create(&PostParams::default(), &pod("c", &[("app", "web")], &[]))
        .await
        .unwrap();
    // Finished: not listed.
    run_pod(&pods, pod("d", &[("app", "web")], &[]), "10.0.0.4", false).await;
    pods.patch_status(
        "d",
        &PatchParams::new(PatchType::Merge),
        &json!({"status": {"phase": "Succeeded"}}),
    )
    .await
    .unwrap();
    // Another app's pod: not listed.
    run_pod(&pods, pod("x", &[("app", "db")], &[]), "10.0.0.9", true).await;

    let current = wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &["10.0.0.2"], &["http:8080"])],
    )
    .await;
    // Addresses as Kubernetes writes them: node, reference to the pod; the service's labels.
    let address = &current.subsets.as_ref().unwrap()[0]
        .addresses
        .as_ref()
        .unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("node-1"));
    let target = address.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.name.as_deref(), Some("a"));
    assert_eq!(target.namespace.as_deref(), Some("default"));
    assert_eq!(target.uid.as_deref(), a.uid());
    let port = &current.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        current.labels().get("tier").map(String::as_str),
        Some("frontend")
    );
    assert!(!current.labels().contains_key(HEADLESS_SERVICE_LABEL));

    // b becomes ready, then a stops being ready.
    set_status(&pods, "b", None, true).await;
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1", "10.0.0.2"], &[], &["http:8080"])],
    )
    .await;
    set_status(&pods, "a", None, false).await;
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.2"], &["10.0.0.1"], &["http:8080"])],
    )
    .await;

    // c gets its IP (ready); b is deleted gracefully (terminating pods leave at once).
    set_status(&pods, "c", Some("10.0.0.3"), true).await;
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    assert!(
        pods.get("b")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.3"], &["10.0.0.1"], &["http:8080"])],
    )
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn named_target_ports_resolve_differently_per_pod() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    services
        .create(
            &PostParams::default(),
            &service(
                "web",
                &[("app", "web")],
                vec![
                    port("http", 80, IntOrString::String("web".into())),
                    port("metrics", 9100, IntOrString::Int(9100)),
                ],
            ),
        )
        .await
        .unwrap();
    let selected = [("app", "web")];
    run_pod(
        &pods,
        pod("a", &selected, &[("web", 8080, "TCP")]),
        "10.0.0.1",
        true,
    )
    .await;
    run_pod(
        &pods,
        pod("b", &selected, &[("web", 9090, "TCP")]),
        "10.0.0.2",
        true,
    )
    .await;
    // No port named `web`: only on the numeric port.
    run_pod(
        &pods,
        pod("c", &selected, &[("admin", 7000, "TCP")]),
        "10.0.0.3",
        true,
    )
    .await;
    // A `web` port of another protocol does not count.
    run_pod(
        &pods,
        pod("d", &selected, &[("web", 53, "UDP")]),
        "10.0.0.4",
        false,
    )
    .await;

    wait_for_shape(
        &endpoints,
        "web",
        &vec![
            subset(&["10.0.0.1"], &[], &["http:8080"]),
            subset(
                &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                &["10.0.0.4"],
                &["metrics:9100"],
            ),
            subset(&["10.0.0.2"], &[], &["http:9090"]),
        ],
    )
    .await;

    // Pods with the same resolved ports share a subset.
    run_pod(
        &pods,
        pod("e", &selected, &[("web", 8080, "TCP")]),
        "10.0.0.5",
        true,
    )
    .await;
    wait_for_shape(
        &endpoints,
        "web",
        &vec![
            subset(&["10.0.0.1", "10.0.0.5"], &[], &["http:8080"]),
            subset(
                &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"],
                &["10.0.0.4"],
                &["metrics:9100"],
            ),
            subset(&["10.0.0.2"], &[], &["http:9090"]),
        ],
    )
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_leaving_the_selector_or_going_away_is_removed() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    services
        .create(
            &PostParams::default(),
            &service("web", &[("app", "web")], web_ports()),
        )
        .await
        .unwrap();
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
        run_pod(&pods, pod(name, &[("app", "web")], &[]), ip, true).await;
    }
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            &[],
            &["http:8080"],
        )],
    )
    .await;

    // a is relabelled out of the selector.
    pods.patch(
        "a",
        &PatchParams::new(PatchType::Merge),
        &json!({"metadata": {"labels": {"app": "canary"}}}),
    )
    .await
    .unwrap();
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.2", "10.0.0.3"], &[], &["http:8080"])],
    )
    .await;

    // b is deleted for good; the last pod goes too: the Endpoints stay, empty.
    pods.delete("b", &DeleteParams::immediately())
        .await
        .unwrap();
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.3"], &[], &["http:8080"])],
    )
    .await;
    pods.delete("c", &DeleteParams::immediately())
        .await
        .unwrap();
    wait_for_shape(&endpoints, "web", &Vec::new()).await;

    // And a pod relabelled into the selector joins.
    pods.patch(
        "a",
        &PatchParams::new(PatchType::Merge),
        &json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await
    .unwrap();
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &[], &["http:8080"])],
    )
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn endpoints_go_with_their_service_and_user_endpoints_stay() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    // Left over from before the controller ran: Endpoints without a Service (deleted at start),
    // and a leader-election record (kept).
    let orphan = Endpoints {
        metadata: ObjectMeta {
            name: Some("orphan".into()),
            ..ObjectMeta::default()
        },
        subsets: None,
    };
    endpoints
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    let mut leader = orphan.clone();
    leader.metadata.name = Some("scheduler-lock".into());
    leader.metadata.annotations = Some(labels(&[(LEADER_ANNOTATION, "{}")]));
    endpoints
        .create(&PostParams::default(), &leader)
        .await
        .unwrap();
    // A Service without a selector and the Endpoints its user keeps by hand.
    services
        .create(
            &PostParams::default(),
            &service(
                "external",
                &[],
                vec![port("pg", 5432, IntOrString::Int(5432))],
            ),
        )
        .await
        .unwrap();
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "pg", "port": 5432}]}],
    }))
    .unwrap();
    let manual = endpoints
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();

    let running = Running::start(&client);
    services
        .create(
            &PostParams::default(),
            &service("web", &[("app", "web")], web_ports()),
        )
        .await
        .unwrap();
    run_pod(&pods, pod("a", &[("app", "web")], &[]), "10.0.0.1", true).await;
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &[], &["http:8080"])],
    )
    .await;
    wait_until_gone(&endpoints, "orphan").await;
    assert!(endpoints.get_opt("scheduler-lock").await.unwrap().is_some());

    // The Service goes: so do its Endpoints.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_gone(&endpoints, "web").await;

    // The user's Endpoints were never touched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = endpoints.get("external").await.unwrap();
    assert_eq!(still.resource_version(), manual.resource_version());

    // A Service made again gets its Endpoints again.
    services
        .create(
            &PostParams::default(),
            &service("web", &[("app", "web")], web_ports()),
        )
        .await
        .unwrap();
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &[], &["http:8080"])],
    )
    .await;
    // Endpoints deleted by someone else come back.
    endpoints
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &[], &["http:8080"])],
    )
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn headless_services_list_pods_with_their_hostnames() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    let mut headless = service("db", &[("app", "db")], Vec::new());
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    services
        .create(&PostParams::default(), &headless)
        .await
        .unwrap();
    let mut member = pod("db-0", &[("app", "db")], &[]);
    let spec = member.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("db".into());
    run_pod(&pods, member, "10.0.1.1", true).await;
    // A hostname under another subdomain is not published.
    let mut stranger = pod("db-1", &[("app", "db")], &[]);
    let spec = stranger.spec.as_mut().unwrap();
    spec.hostname = Some("db-1".into());
    spec.subdomain = Some("elsewhere".into());
    run_pod(&pods, stranger, "10.0.1.2", false).await;

    let current = wait_for_shape(
        &endpoints,
        "db",
        &vec![subset(&["10.0.1.1"], &["10.0.1.2"], &[])],
    )
    .await;
    assert_eq!(
        current
            .labels()
            .get(HEADLESS_SERVICE_LABEL)
            .map(String::as_str),
        Some("")
    );
    let subset = &current.subsets.as_ref().unwrap()[0];
    assert_eq!(
        subset.addresses.as_ref().unwrap()[0].hostname.as_deref(),
        Some("db-0")
    );
    assert_eq!(
        subset.not_ready_addresses.as_ref().unwrap()[0].hostname,
        None
    );
    assert!(subset.ports.is_none());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let client = client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    let mut peers = service("peers", &[("app", "etcd")], web_ports());
    peers.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    services
        .create(&PostParams::default(), &peers)
        .await
        .unwrap();
    run_pod(
        &pods,
        pod("etcd-0", &[("app", "etcd")], &[]),
        "10.0.2.1",
        true,
    )
    .await;
    run_pod(
        &pods,
        pod("etcd-1", &[("app", "etcd")], &[]),
        "10.0.2.2",
        false,
    )
    .await;
    wait_for_shape(
        &endpoints,
        "peers",
        &vec![subset(&["10.0.2.1", "10.0.2.2"], &[], &["http:8080"])],
    )
    .await;

    // Terminating pods stay published too (Kubernetes' includeTerminating), until they go.
    pods.delete("etcd-1", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_for_shape(
        &endpoints,
        "peers",
        &vec![subset(&["10.0.2.1", "10.0.2.2"], &[], &["http:8080"])],
    )
    .await;
    pods.delete("etcd-1", &DeleteParams::immediately())
        .await
        .unwrap();
    wait_for_shape(
        &endpoints,
        "peers",
        &vec![subset(&["10.0.2.1"], &[], &["http:8080"])],
    )
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_written_when_nothing_changes() {
    let writes = Arc::new(AtomicUsize::new(0));
    let client = client_counting(Arc::clone(&writes)).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = Running::start(&client);

    services
        .create(
            &PostParams::default(),
            &service("web", &[("app", "web")], web_ports()),
        )
        .await
        .unwrap();
    run_pod(&pods, pod("a", &[("app", "web")], &[]), "10.0.0.1", true).await;
    let settled = wait_for_shape(
        &endpoints,
        "web",
        &vec![subset(&["10.0.0.1"], &[], &["http:8080"])],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let version = endpoints
        .get("web")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(version, settled.metadata.resource_version, "settled");

    let mut events = endpoints
        .watch(&WatchParams::default(), version.as_deref().unwrap())
        .await
        .unwrap();
    let writes_before = writes.load(Ordering::SeqCst);

    // Changes that move no address: an annotation, a label the selector ignores, the pod's
    // status again, another app's pod, the Service's spec (same ports), a resync of everything.
    pods.patch(
        "a",
        &PatchParams::new(PatchType::Merge),
        &json!({"metadata": {"annotations": {"note": "hello"}, "labels": {"extra": "1"}}}),
    )
    .await
    .unwrap();
    set_status(&pods, "a", None, true).await;
    run_pod(&pods, pod("x", &[("app", "db")], &[]), "10.0.0.9", true).await;
    services
        .patch(
            "web",
            &PatchParams::new(PatchType::Merge),
            &json!({"metadata": {"annotations": {"owner": "team-a"}}}),
        )
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(3), events.next()).await;
    assert!(quiet.is_err(), "no write expected, got {quiet:?}");
    assert_eq!(
        writes.load(Ordering::SeqCst),
        writes_before,
        "no update even sent to the API"
    );

    // A change that matters is written once.
    run_pod(&pods, pod("b", &[("app", "web")], &[]), "10.0.0.2", true).await;
    let event = tokio::time::timeout(Duration::from_secs(3), events.next())
        .await
        .expect("the new pod is written")
        .unwrap();
    let WatchEvent::Modified(written) = event else {
        panic!("expected MODIFIED, got {event:?}");
    };
    assert_eq!(
        shape(written.subsets.as_deref()),
        vec![subset(&["10.0.0.1", "10.0.0.2"], &[], &["http:8080"])]
    );
    let more = tokio::time::timeout(Duration::from_secs(3), events.next()).await;
    assert!(more.is_err(), "one write for one change, got {more:?}");
    assert_eq!(writes.load(Ordering::SeqCst), writes_before + 1);
    running.stop().await;
}
