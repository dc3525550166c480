//! The node lifecycle controller against the in-process API: nodes whose Lease stops being
//! renewed are marked unknown and tainted unreachable, their pods evicted as their tolerations
//! say, and the taints go when the node's agent comes back.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Container, Event, Node, NodeCondition, NodeStatus, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use orchestra_core::api::{Api, Client, ListParams, PostParams};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::node_lifecycle::{
    EVICTION_REASON, NODE_LEASE_NAMESPACE, NODE_STATUS_UNKNOWN, NOT_READY_TAINT,
    NodeLifecycleConfig, NodeLifecycleController, UNREACHABLE_TAINT,
};
use orchestra_core::store::MemoryStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A client whose `DefaultTolerationSeconds` admission gives pods no time on a lost node: a pod
/// that does not say otherwise is evicted as soon as its node is tainted.
async fn client() -> Client {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
        .default_toleration_seconds(std::time::Duration::ZERO, std::time::Duration::ZERO)
        .build();
    client.bootstrap().await.unwrap();
    client
}

fn now(client: &Client) -> Timestamp {
    client.clock().now()
}

/// A running controller, stopped (and awaited) by [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(client: &Client) -> Running {
        let config = NodeLifecycleConfig {
            node_monitor_grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = NodeLifecycleController::with_config(client.clone(), config);
        let task = tokio::spawn(controller.run(async move {
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

fn nodes(client: &Client) -> Api<Node> {
    Api::all(client.clone())
}

fn leases(client: &Client) -> Api<Lease> {
    Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE)
}

fn pods(client: &Client) -> Api<Pod> {
    Api::namespaced(client.clone(), "default")
}

/// Registers a node as its agent would: the Node, `Ready=True`, and its Lease, renewed now.
async fn register(client: &Client, name: &str) {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    nodes(client)
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    post_ready(client, name, "True").await;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(now(client))),
            ..LeaseSpec::default()
        }),
    };
    leases(client)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

/// The node's agent posts its `Ready` condition (and only it, as a minimal agent would).
async fn post_ready(client: &Client, name: &str, status: &str) {
    let mut node = nodes(client).get(name).await.unwrap();
    let at = Time(now(client));
    node.status = Some(NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            last_heartbeat_time: Some(at.clone()),
            last_transition_time: Some(at),
            ..NodeCondition::default()
        }]),
        ..NodeStatus::default()
    });
    nodes(client)
        .replace_status(name, &PostParams::default(), &node)
        .await
        .unwrap();
}

/// The node's agent renews its Lease.
async fn renew(client: &Client, name: &str) {
    let mut lease = leases(client).get(name).await.unwrap();
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(MicroTime(now(client)));
    }
    leases(client)
        .replace(name, &PostParams::default(), &lease)
        .await
        .unwrap();
}

/// Renews the node's Lease every 10 s, for ever (abort the task to stop).
fn keep_renewing(client: &Client, name: &str) -> JoinHandle<()> {
    let client = client.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            renew(&client, &name).await;
        }
    })
}

fn ready_condition(node: &Node) -> NodeCondition {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .expect("a Ready condition")
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|taint: &Taint| (taint.key.clone(), taint.effect.clone()))
        .collect()
}

fn pair(key: &str, effect: &str) -> (String, String) {
    (key.to_owned(), effect.to_owned())
}

async fn create_pod(client: &Client, name: &str, node: &str, tolerations: Vec<Toleration>) {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Container::default()
            }],
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods(client)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

fn tolerate_unreachable(seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(UNREACHABLE_TAINT.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

/// Whether the pod is being deleted (or gone).
async fn evicted(client: &Client, name: &str) -> bool {
    pods(client)
        .get_opt(name)
        .await
        .unwrap()
        .is_none_or(|pod| pod.metadata.deletion_timestamp.is_some())
}

async fn sleep(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn a_heartbeating_node_stays_ready_and_untainted() {
    let client = client().await;
    register(&client, "node-1").await;
    let renewing = keep_renewing(&client, "node-1");
    let running = Running::start(&client);

    sleep(120).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "True");
    assert!(taints(&node).is_empty(), "{:?}", taints(&node));

    renewing.abort();
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_marked_unknown_tainted_and_its_pods_evicted() {
    let client = client().await;
    register(&client, "lost").await;
    register(&client, "healthy").await;
    let renewing = keep_renewing(&client, "healthy");
    create_pod(
        &client,
        "tolerates-30s",
        "lost",
        vec![tolerate_unreachable(Some(30))],
    )
    .await;
    create_pod(&client, "intolerant", "lost", Vec::new()).await;
    create_pod(
        &client,
        "tolerates-forever",
        "lost",
        vec![tolerate_unreachable(None)],
    )
    .await;
    create_pod(&client, "on-healthy-node", "healthy", Vec::new()).await;
    let running = Running::start(&client);

    // Within the grace period: nothing happens.
    sleep(35).await;
    let node = nodes(&client).get("lost").await.unwrap();
    assert_eq!(ready_condition(&node).status, "True");
    assert!(taints(&node).is_empty());
    assert!(!evicted(&client, "intolerant").await);

    // Past it (40 s, seen on the next 5 s period).
    sleep(15).await;
    let node = nodes(&client).get("lost").await.unwrap();
    let ready = ready_condition(&node);
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some(NODE_STATUS_UNKNOWN));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let tainted_at = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .and_then(|taints| taints.iter().find(|t| t.effect == "NoExecute"))
        .and_then(|taint| taint.time_added.clone())
        .expect("the NoExecute taint has timeAdded")
        .0;
    let mut found = taints(&node);
    found.sort();
    assert_eq!(
        found,
        vec![
            pair(UNREACHABLE_TAINT, "NoExecute"),
            pair(UNREACHABLE_TAINT, "NoSchedule")
        ]
    );
    for condition in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let status = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert!(
            status
                .iter()
                .any(|c| c.type_ == condition && c.status == "Unknown"),
            "{condition}"
        );
    }
    assert!(evicted(&client, "intolerant").await, "evicted at once");
    assert!(!evicted(&client, "tolerates-30s").await);
    assert!(!evicted(&client, "tolerates-forever").await);

    // Not before its 30 s are up...
    let until_due = tainted_at.duration_until(now(&client)).as_secs();
    assert!(until_due < 10, "tainted {until_due}s ago");
    sleep(u64::try_from(25 - until_due).unwrap()).await;
    assert!(!evicted(&client, "tolerates-30s").await, "tolerated still");
    // ... but once they are (and the next period has come).
    sleep(10).await;
    assert!(evicted(&client, "tolerates-30s").await);

    // Much later: the pod tolerating for ever, and the healthy node's pod, stay.
    sleep(300).await;
    assert!(!evicted(&client, "tolerates-forever").await);
    assert!(!evicted(&client, "on-healthy-node").await);
    let healthy = nodes(&client).get("healthy").await.unwrap();
    assert_eq!(ready_condition(&healthy).status, "True");
    assert!(taints(&healthy).is_empty());

    // Each eviction is recorded on its pod.
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut evictions: Vec<String> = events
        .items
        .iter()
        .filter(|event| event.reason.as_deref() == Some(EVICTION_REASON))
        .filter_map(|event| event.message.clone())
        .collect();
    evictions.sort();
    assert_eq!(
        evictions,
        vec![
            "Marking for deletion Pod default/intolerant".to_owned(),
            "Marking for deletion Pod default/tolerates-30s".to_owned(),
        ]
    );

    renewing.abort();
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn taints_follow_the_node_when_heartbeats_resume() {
    let client = client().await;
    register(&client, "node-1").await;
    let running = Running::start(&client);

    sleep(50).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "Unknown");
    assert_eq!(taints(&node).len(), 2);

    // The Lease alone is renewed again: the node stays unreachable until its agent says Ready.
    renew(&client, "node-1").await;
    let renewing = keep_renewing(&client, "node-1");
    sleep(10).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "Unknown");
    let mut found = taints(&node);
    found.sort();
    assert_eq!(
        found,
        vec![
            pair(UNREACHABLE_TAINT, "NoExecute"),
            pair(UNREACHABLE_TAINT, "NoSchedule")
        ]
    );

    // The agent says it is not ready: the not-ready taints replace the unreachable ones.
    post_ready(&client, "node-1", "False").await;
    sleep(10).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "False");
    let mut found = taints(&node);
    found.sort();
    assert_eq!(
        found,
        vec![
            pair(NOT_READY_TAINT, "NoExecute"),
            pair(NOT_READY_TAINT, "NoSchedule")
        ]
    );

    // Then ready: no taints left, for good.
    post_ready(&client, "node-1", "True").await;
    sleep(10).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "True");
    assert!(taints(&node).is_empty(), "{:?}", taints(&node));
    sleep(120).await;
    let node = nodes(&client).get("node-1").await.unwrap();
    assert_eq!(ready_condition(&node).status, "True");
    assert!(taints(&node).is_empty(), "{:?}", taints(&node));

    renewing.abort();
    running.stop().await;
}
