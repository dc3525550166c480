//! The controller manager: choosing controllers as kube-controller-manager's `--controllers`
//! flag does, every controller at work together, and two leader-elected managers of which only
//! one acts, the other taking over when the first dies.
#![cfg(feature = "testing")]

use std::time::Duration;

use orchestra_core::api::{Api, Client, DeleteParams, ListParams, PostParams};
use orchestra_core::controllers::manager::{ControllerManager, ControllerName, ManagerError};
use orchestra_core::controllers::token::{SigningKey, TokenIssuer};
use orchestra_core::k8s::api::apps::v1::Deployment;
use orchestra_core::k8s::api::coordination::v1::Lease;
use orchestra_core::k8s::api::core::v1::{
    Endpoints, Namespace, Pod, Secret, Service, ServiceAccount,
};
use orchestra_core::runtime::leader_election::LeaderElectionConfig;
use orchestra_core::simulator::{self, Cluster, ClusterConfig};
use orchestra_core::store::MemoryStore;

fn deployment(namespace: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }))
    .unwrap()
}

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SigningKey::generate().unwrap())
}

#[test]
fn controllers_are_chosen_as_kube_controller_manager_chooses_them() {
    let client = Client::new(MemoryStore::new());
    let defaults = ControllerManager::new(client.clone());
    assert_eq!(
        defaults.enabled(),
        ControllerName::ALL
            .into_iter()
            .filter(|name| !matches!(
                name,
                ControllerName::ServiceAccountToken | ControllerName::RootCaPublisher
            ))
            .collect::<Vec<_>>(),
        "every controller but the token controller, which needs a key, and the root CA \
         publisher, which needs the CA"
    );
    let with_key = ControllerManager::new(client.clone())
        .token_issuer(issuer())
        .root_ca(b"PEM".to_vec());
    assert_eq!(with_key.enabled(), ControllerName::ALL.to_vec());

    let some = ControllerManager::new(client.clone())
        .controllers("*,-garbagecollector,-namespace")
        .unwrap();
    assert!(!some.enabled().contains(&ControllerName::GarbageCollector));
    assert!(!some.enabled().contains(&ControllerName::Namespace));
    assert!(some.enabled().contains(&ControllerName::Deployment));

    let named = ControllerManager::new(client.clone())
        .controllers("deployment, replicaset")
        .unwrap();
    assert_eq!(
        named.enabled(),
        [ControllerName::ReplicaSet, ControllerName::Deployment]
    );
    for name in ControllerName::ALL {
        assert_eq!(name.as_str().parse::<ControllerName>().unwrap(), name);
    }

    match ControllerManager::new(client.clone()).controllers("*,replicasets") {
        Err(ManagerError::UnknownController(name)) => assert_eq!(name, "replicasets"),
        other => panic!("expected an unknown controller, got {other:?}"),
    }
    assert!(matches!(
        ControllerManager::new(client.clone()).controllers("*,,-namespace"),
        Err(ManagerError::EmptyItem(_))
    ));
    let tokenless = ControllerManager::new(client)
        .controllers("serviceaccount-token")
        .unwrap();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(tokenless.run(std::future::ready(())));
    assert!(matches!(outcome, Err(ManagerError::TokenWithoutIssuer)));
}

/// Every controller at once, on one client: a namespace gets its account and token secret, a
/// Deployment its pods, a Service its Endpoints, and deleting the namespace empties and removes
/// it (the garbage collector and the namespace controller).
#[test]
fn every_controller_works_together() {
    simulator::simulate(11, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let client = cluster.client().clone();
        cluster.spawn("controller-manager", async move {
            ControllerManager::new(client)
                .token_issuer(issuer())
                .run(std::future::pending())
                .await
                .unwrap();
        });
        let client = cluster.client().clone();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let shop: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "shop"}})).unwrap();
        namespaces
            .create(&PostParams::default(), &shop)
            .await
            .unwrap();
        Api::<Deployment>::namespaced(client.clone(), "shop")
            .create(&PostParams::default(), &deployment("shop", 3))
            .await
            .unwrap();
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        }))
        .unwrap();
        Api::<Service>::namespaced(client.clone(), "shop")
            .create(&PostParams::default(), &service)
            .await
            .unwrap();

        let observer = cluster.observer().clone();
        let accounts: Api<ServiceAccount> = Api::namespaced(observer.clone(), "shop");
        let secrets: Api<Secret> = Api::namespaced(observer.clone(), "shop");
        let endpoints: Api<Endpoints> = Api::namespaced(observer.clone(), "shop");
        let pods: Api<Pod> = Api::namespaced(observer.clone(), "shop");
        let settled = cluster
            .wait_until(Duration::from_secs(60), || async {
                let account = accounts.get_opt("default").await.unwrap().is_some();
                let token = secrets
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .any(|secret| {
                        secret.type_.as_deref() == Some("kubernetes.io/service-account-token")
                            && secret
                                .data
                                .as_ref()
                                .is_some_and(|d| d.contains_key("token"))
                    });
                let ready_addresses = endpoints
                    .get_opt("web")
                    .await
                    .unwrap()
                    .and_then(|e| e.subsets)
                    .into_iter()
                    .flatten()
                    .map(|subset| {
                        assert_eq!(subset.ports.unwrap()[0].port, 8080, "the named port");
                        subset.addresses.unwrap_or_default().len()
                    })
                    .sum::<usize>();
                account && token && ready_addresses == 3
            })
            .await;
        assert!(settled, "account, token secret and 3 ready endpoints");
        assert_eq!(
            pods.list(&ListParams::default()).await.unwrap().items.len(),
            3
        );

        namespaces
            .delete("shop", &DeleteParams::default())
            .await
            .unwrap();
        let removed = cluster
            .wait_until(Duration::from_secs(120), || async {
                Api::<Namespace>::all(observer.clone())
                    .get_opt("shop")
                    .await
                    .unwrap()
                    .is_none()
            })
            .await;
        assert!(removed, "the namespace is emptied, then removed");
        assert!(
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    });
}

/// Two managers over one lease: only the leader acts (the lease names it); killed, the other
/// takes over within the lease duration and carries on the work.
#[test]
fn with_leader_election_one_manager_acts_and_the_other_takes_over() {
    simulator::simulate(12, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        for identity in ["manager-a", "manager-b"] {
            let client = cluster.client().clone();
            let config =
                LeaderElectionConfig::new("kube-system", "kube-controller-manager", identity);
            cluster.spawn(identity, async move {
                ControllerManager::new(client)
                    .controllers("replicaset,deployment")
                    .unwrap()
                    .leader_election(config)
                    .run(std::future::pending())
                    .await
                    .unwrap();
            });
            // a starts first, so a leads.
            cluster.run_for(Duration::from_millis(500)).await;
        }
        let observer = cluster.observer().clone();
        let leases: Api<Lease> = Api::namespaced(observer.clone(), "kube-system");
        let holder = || async {
            leases
                .get("kube-controller-manager")
                .await
                .unwrap()
                .spec
                .and_then(|spec| spec.holder_identity)
        };
        assert_eq!(holder().await.as_deref(), Some("manager-a"));

        let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "default");
        deployments
            .create(&PostParams::default(), &deployment("default", 2))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(observer.clone(), "default");
        let count = |n: usize| {
            let pods = pods.clone();
            move || {
                let pods = pods.clone();
                async move { pods.list(&ListParams::default()).await.unwrap().items.len() == n }
            }
        };
        assert!(cluster.wait_until(Duration::from_secs(30), count(2)).await);

        cluster.kill("manager-a");
        let mut scaled = deployments.get("web").await.unwrap();
        scaled.spec.as_mut().unwrap().replicas = Some(5);
        deployments
            .replace("web", &PostParams::default(), &scaled)
            .await
            .unwrap();
        // Nobody acts until the dead leader's lease runs out (15 s).
        cluster.run_for(Duration::from_secs(10)).await;
        assert_eq!(
            pods.list(&ListParams::default()).await.unwrap().items.len(),
            2,
            "the standby does not act while the lease is held"
        );
        assert!(cluster.wait_until(Duration::from_secs(30), count(5)).await);
        assert_eq!(holder().await.as_deref(), Some("manager-b"));
    });
}
