//! The cluster simulator: the fake node agent binds, starts and stops pods as their behaviour
//! says; a killed task stops at once; and a run replays exactly from its seed.
#![cfg(feature = "testing")]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use orchestra_core::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use orchestra_core::k8s::api::core::v1::{Node, Pod};
use orchestra_core::simulator::{
    self, AgentConfig, BEHAVIOUR_LABEL, ChaosConfig, Cluster, ClusterConfig,
};

fn pod(name: &str, behaviour: Option<&str>) -> Pod {
    let mut labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    if let Some(behaviour) = behaviour {
        labels.insert(BEHAVIOUR_LABEL.to_owned(), behaviour.to_owned());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]},
    }))
    .unwrap()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or("Pending")
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

#[test]
fn nodes_are_registered_ready() {
    simulator::simulate(1, |seed| async move {
        let cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let nodes: Api<Node> = Api::all(cluster.observer().clone());
        let listed = nodes.list(&Default::default()).await.unwrap();
        let names: Vec<_> = listed
            .items
            .iter()
            .map(|node| node.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["node-0", "node-1", "node-2"]);
        for node in &listed.items {
            let conditions = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            );
        }
    });
}

#[test]
fn pods_are_bound_started_and_stopped_as_their_behaviour_says() {
    simulator::simulate(2, |seed| async move {
        let cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "default");
        for (name, behaviour) in [
            ("plain", None),
            ("ready", Some("ready")),
            ("never-ready", Some("never-ready")),
            ("fail", Some("fail")),
            ("pending", Some("pending")),
        ] {
            pods.create(&PostParams::default(), &pod(name, behaviour))
                .await
                .unwrap();
        }
        // The default delays: bound within 10 ms, started within 500 ms more.
        cluster.run_for(Duration::from_secs(1)).await;
        let get = |name: &'static str| {
            let pods = pods.clone();
            async move { pods.get(name).await.unwrap() }
        };
        for name in ["plain", "ready"] {
            let pod = get(name).await;
            assert_eq!(phase(&pod), "Running", "{name}");
            assert!(ready(&pod), "{name}");
            let status = pod.status.as_ref().unwrap();
            assert!(status.pod_ip.as_deref().unwrap().starts_with("10.128."));
            assert!(status.host_ip.is_some() && status.start_time.is_some());
            let containers = status.container_statuses.as_ref().unwrap();
            assert_eq!(containers.len(), 2);
            assert!(containers.iter().all(|container| container.ready));
            assert!(
                pod.spec
                    .as_ref()
                    .unwrap()
                    .node_name
                    .as_deref()
                    .unwrap()
                    .starts_with("node-")
            );
        }
        let never_ready = get("never-ready").await;
        assert_eq!(phase(&never_ready), "Running");
        assert!(!ready(&never_ready));
        let failed = get("fail").await;
        assert_eq!(phase(&failed), "Failed");
        let pending = get("pending").await;
        assert_eq!(phase(&pending), "Pending");
        assert!(
            pending.spec.as_ref().unwrap().node_name.is_some(),
            "bound all the same"
        );

        // A graceful deletion of a running pod is finished by the agent.
        let deletion = pods
            .delete("plain", &DeleteParams::default())
            .await
            .unwrap();
        assert!(matches!(
            deletion,
            orchestra_core::api::Deletion::InProgress(_)
        ));
        assert!(pods.get_opt("plain").await.unwrap().is_some());
        cluster.run_for(Duration::from_millis(300)).await;
        assert!(pods.get_opt("plain").await.unwrap().is_none());
    });
}

#[test]
fn pod_ips_are_distinct() {
    simulator::simulate(3, |seed| async move {
        let cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "default");
        for index in 0..300 {
            pods.create(&PostParams::default(), &pod(&format!("p{index}"), None))
                .await
                .unwrap();
        }
        cluster.run_for(Duration::from_secs(2)).await;
        let listed = pods.list(&Default::default()).await.unwrap();
        let mut addresses: Vec<String> = listed
            .items
            .iter()
            .map(|pod| pod.status.as_ref().unwrap().pod_ip.clone().unwrap())
            .collect();
        assert_eq!(addresses.len(), 300);
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 300);
    });
}

#[test]
fn a_killed_agent_stops_at_once_and_a_restarted_one_catches_up() {
    simulator::simulate(4, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        assert!(cluster.is_running(simulator::NODE_AGENT));
        assert!(cluster.kill(simulator::NODE_AGENT));
        assert!(!cluster.is_running(simulator::NODE_AGENT));
        let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "default");
        pods.create(&PostParams::default(), &pod("web", None))
            .await
            .unwrap();
        cluster.run_for(Duration::from_secs(2)).await;
        assert_eq!(phase(&pods.get("web").await.unwrap()), "Pending");
        cluster.start_agent();
        cluster.run_for(Duration::from_secs(1)).await;
        assert_eq!(phase(&pods.get("web").await.unwrap()), "Running");
    });
}

/// Everything the observer saw happen to pods, in order.
async fn pod_history(seed: u64, chaos: Option<ChaosConfig>) -> Vec<String> {
    let mut config = ClusterConfig::seeded(seed).agent(AgentConfig {
        nodes: (0..5).map(|index| format!("node-{index}")).collect(),
        ..AgentConfig::default()
    });
    config.chaos = chaos;
    let cluster = Cluster::start(config).await.unwrap();
    let observed: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
    let mut events = observed.watch(&WatchParams::default(), "0").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "default");
    for index in 0..20 {
        let mut created = pod("", None);
        created.metadata.name = None;
        created.metadata.generate_name = Some(format!("web-{index}-"));
        pods.create(&PostParams::default(), &created).await.unwrap();
    }
    cluster.run_for(Duration::from_secs(1)).await;
    for pod in pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .step_by(3)
    {
        pods.delete(
            pod.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    }
    cluster.run_for(Duration::from_secs(1)).await;
    let mut history = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await
    {
        let line = match event {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) | WatchEvent::Deleted(pod) => {
                format!(
                    "{} {} {} {} {} {:?} {:?}",
                    pod.metadata.name.as_deref().unwrap(),
                    pod.metadata.uid.as_deref().unwrap(),
                    pod.metadata.resource_version.as_deref().unwrap(),
                    phase(&pod),
                    pod.spec
                        .as_ref()
                        .unwrap()
                        .node_name
                        .as_deref()
                        .unwrap_or("-"),
                    pod.status.as_ref().and_then(|status| status.pod_ip.clone()),
                    pod.status
                        .as_ref()
                        .and_then(|status| status.start_time.as_ref())
                        .map(|time| time.0.to_string()),
                )
            }
            other => other.type_name().to_string(),
        };
        history.push(line);
    }
    history
}

#[test]
fn a_run_replays_exactly_from_its_seed() {
    let first = simulator::simulate(11, |seed| pod_history(seed, None));
    let again = simulator::simulate(11, |seed| pod_history(seed, None));
    assert!(first.len() > 60, "{first:#?}");
    assert_eq!(first, again);
    let other = simulator::simulate(12, |seed| pod_history(seed, None));
    assert_ne!(first, other, "another seed gives another run");
}

#[test]
fn a_chaotic_run_replays_exactly_from_its_seed() {
    let chaos = Some(ChaosConfig::default());
    let first = simulator::simulate(21, |seed| pod_history(seed, chaos));
    let again = simulator::simulate(21, |seed| pod_history(seed, chaos));
    assert_eq!(first, again);
}
