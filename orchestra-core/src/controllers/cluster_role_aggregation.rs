//! The ClusterRole aggregation controller (Kubernetes' `clusterrole-aggregation` controller,
//! `pkg/controller/clusterroleaggregation`): a ClusterRole with an `aggregationRule` gets, as its
//! stored `rules`, the rules of every ClusterRole its selectors select.
//!
//! The authorizer evaluates aggregation itself ([`crate::rbac::Authorizer`]), so decisions never
//! wait for this controller; it makes the stored objects say what they grant, so that
//! `kubectl describe clusterrole admin` shows the rules. It watches ClusterRoles, and after
//! every change writes each aggregated role whose stored rules differ from
//! [`aggregated_rules`]. A write that loses to a concurrent one is retried at the next event.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::rbac::v1::ClusterRole;

use crate::api::{Api, Client, PostParams};
use crate::rbac::aggregated_rules;
use crate::runtime::reflector::{self, Reader};
use crate::runtime::watcher::{WatcherConfig, watcher};

/// How long after a failed write the roles are synced again, without a new event.
const RETRY: Duration = Duration::from_secs(5);

/// See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ClusterRoleAggregationController {
    client: Client,
}

impl ClusterRoleAggregationController {
    /// The controller of `client`'s ClusterRoles.
    pub fn new(client: Client) -> ClusterRoleAggregationController {
        ClusterRoleAggregationController { client }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let api = Api::<ClusterRole>::all(self.client.clone());
        let (reader, writer) = reflector::store::<ClusterRole>();
        let events = reflector::reflector(writer, watcher(api.clone(), WatcherConfig::default()));
        let mut events = std::pin::pin!(events);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut retry = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                event = events.next() => {
                    if event.is_none() {
                        return;
                    }
                }
                () = tokio::time::sleep(RETRY), if retry => {}
            }
            if reader.is_ready() {
                retry = !sync(&api, &reader).await;
            }
        }
    }
}

/// Writes every aggregated role whose rules are stale; whether all writes succeeded.
async fn sync(api: &Api<ClusterRole>, reader: &Reader<ClusterRole>) -> bool {
    let roles = reader.state();
    let wanted = aggregated_rules(roles.iter().map(|role| role.as_ref()));
    let mut ok = true;
    for role in &roles {
        let Some(name) = role.metadata.name.as_deref() else {
            continue;
        };
        let Some(rules) = wanted.get(name) else {
            continue;
        };
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            continue;
        }
        let mut updated = ClusterRole::clone(role);
        updated.rules = Some(rules.clone());
        if api
            .replace(name, &PostParams::default(), &updated)
            .await
            .is_err()
        {
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::bootstrap_policy;
    use crate::store::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn aggregated_roles_get_the_rules_of_what_they_select() {
        let client = Client::new(MemoryStore::new());
        let api = Api::<ClusterRole>::all(client.clone());
        let (roles, _) = bootstrap_policy();
        for role in &roles {
            api.create(&PostParams::default(), role).await.unwrap();
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(ClusterRoleAggregationController::new(client.clone()).run(
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let view = api.get("view").await.unwrap();
        let rules = view.rules.unwrap_or_default();
        assert!(
            rules
                .iter()
                .any(|r| r.resources.iter().flatten().any(|r| r == "pods")),
            "{rules:?}"
        );
        let admin = api.get("admin").await.unwrap().rules.unwrap_or_default();
        assert!(admin.len() > rules.len());

        // A new role labelled for `view` is aggregated into view, edit and admin.
        let extra: ClusterRole = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "widgets-view", "labels": {crate::rbac::AGGREGATE_TO_VIEW: "true"}},
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]
        }))
        .unwrap();
        api.create(&PostParams::default(), &extra).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        for name in ["view", "edit", "admin"] {
            let rules = api.get(name).await.unwrap().rules.unwrap_or_default();
            assert!(
                rules
                    .iter()
                    .any(|r| r.resources.iter().flatten().any(|r| r == "widgets")),
                "{name}: {rules:?}"
            );
        }
        let _ = stop.send(());
        running.await.unwrap();
    }
}
