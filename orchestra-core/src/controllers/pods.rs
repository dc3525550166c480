//! What the workload controllers need to know about pods: readiness and availability, controller
//! references, pods made from templates, and the ranking that decides which pods go first when
//! a controller scales down.
//!
//! These follow Kubernetes' `podutil` and `controller_utils`: a pod is **ready** when its `Ready`
//! condition is `True`, **available** when it has been ready for at least `minReadySeconds`, and
//! **active** while it is neither finished (`Succeeded`, `Failed`) nor being deleted.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::controllers::pods;
//! use orchestra_core::k8s::api::core::v1::{Pod, PodCondition, PodStatus};
//!
//! let mut pod = Pod::default();
//! assert!(!pods::is_ready(&pod));
//! pod.status = Some(PodStatus {
//!     phase: Some("Running".into()),
//!     conditions: Some(vec![PodCondition {
//!         type_: "Ready".into(),
//!         status: "True".into(),
//!         ..PodCondition::default()
//!     }]),
//!     ..PodStatus::default()
//! });
//! assert!(pods::is_ready(&pod) && pods::is_active(&pod));
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::resource::{Resource, TypeMeta};

/// The `Ready` condition of a pod, if it has one.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|condition| condition.status == "True")
}

/// When the pod became ready, if it is ready and says so.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|condition| condition.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|time| time.0)
}

/// Whether the pod is available at `now`: ready for at least `min_ready_seconds` (a ready pod
/// with no transition time counts as available only when `min_ready_seconds` is 0).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| {
        since
            .saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|at| at <= now)
    })
}

/// When a ready pod that is not available yet becomes available, if it will.
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    ready_since(pod)?
        .saturating_add(SignedDuration::from_secs(i64::from(
            min_ready_seconds.max(0),
        )))
        .ok()
}

/// The pod's phase (`Pending` when it has none yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod is being deleted (it has a deletion timestamp).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the pod counts towards its controller's replicas: not finished, not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_terminating(pod)
}

/// Whether the pod is bound to a node.
pub fn is_scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .is_some_and(|node| !node.is_empty())
}

/// The owner reference that marks the object's controller, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|reference| reference.controller == Some(true))
}

/// Whether `meta`'s controller is the object `owner` (same uid).
pub fn is_controlled_by(meta: &ObjectMeta, owner: &ObjectMeta) -> bool {
    match (controller_of(meta), owner.uid.as_deref()) {
        (Some(reference), Some(uid)) => reference.uid == uid,
        _ => false,
    }
}

/// The owner reference a controller puts on what it controls: `controller` and
/// `blockOwnerDeletion` set, as Kubernetes' `NewControllerRef`.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let types = TypeMeta::of::<K>();
    let meta = owner.meta();
    OwnerReference {
        api_version: types.api_version,
        kind: types.kind,
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod from `template` for the controller `owner`: the template's labels, annotations,
/// finalizers and spec, a generated name `<prefix>-…`, and the controller reference.
pub fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name_prefix(prefix)),
            namespace: Some(namespace.to_owned()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The prefix of generated names for the children of `parent`: `parent-`, shortened so that the
/// generated name (five more characters) fits in 63 characters.
pub fn generate_name_prefix(parent: &str) -> String {
    const MAX_PREFIX: usize = 63 - 5;
    let mut prefix = format!("{parent}-");
    if prefix.len() > MAX_PREFIX {
        let mut cut = MAX_PREFIX;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    prefix
}

/// The highest restart count of the pod's containers.
fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().map(|status| status.restart_count).max())
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Orders active pods from the one to delete first to the one to delete last, as Kubernetes'
/// `ActivePodsWithRanks` does:
///
/// 1. unscheduled before scheduled;
/// 2. `Pending` before `Unknown` before `Running`;
/// 3. not ready before ready;
/// 4. pods sharing their node with more of their siblings (a higher `rank`) first;
/// 5. ready for less time before ready for longer;
/// 6. more container restarts before fewer;
/// 7. newer before older;
///
/// then by name, so that the order is total.
pub fn deletion_order(a: &Pod, a_rank: usize, b: &Pod, b_rank: usize) -> Ordering {
    is_scheduled(a)
        .cmp(&is_scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| b_rank.cmp(&a_rank))
        .then_with(|| match (is_ready(a), is_ready(b)) {
            // Ready more recently (a later transition) goes first.
            (true, true) => ready_since(b).cmp(&ready_since(a)),
            _ => Ordering::Equal,
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            let created = |pod: &Pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
            // Newer first; a pod with no creation time counts as the newest.
            match (created(a), created(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => b.cmp(&a),
            }
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Sorts `pods` so that the ones to delete come first, ranking each by how many of `related`
/// (the pods of the same controller or of its siblings) run on its node, as Kubernetes does when
/// it scales a ReplicaSet down.
pub fn sort_for_deletion<P: AsRef<Pod>>(pods: &mut [P], related: &[P]) {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in related {
        if let Some(node) = pod
            .as_ref()
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .filter(|node| !node.is_empty())
            && is_active(pod.as_ref())
        {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .and_then(|node| per_node.get(node).copied())
            .unwrap_or(0)
    };
    let mut ranked: Vec<(usize, usize)> = pods
        .iter()
        .enumerate()
        .map(|(index, pod)| (rank(pod.as_ref()), index))
        .collect();
    ranked.sort_by(|(a_rank, a), (b_rank, b)| {
        deletion_order(pods[*a].as_ref(), *a_rank, pods[*b].as_ref(), *b_rank)
    });
    let order: Vec<usize> = ranked.into_iter().map(|(_, index)| index).collect();
    apply_permutation(pods, order);
}

/// Rearranges `items` so that position `i` holds what was at `order[i]`.
fn apply_permutation<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        let mut current = start;
        while order[current] != start {
            let next = order[current];
            items.swap(current, next);
            order[current] = current;
            current = next;
        }
        order[current] = current;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(at(0))),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn on(mut pod: Pod, node: &str) -> Pod {
        pod.spec = Some(PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        });
        pod
    }

    fn running(mut pod: Pod, ready_at: Option<i64>) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_at.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready_at.map(|seconds| Time(at(seconds))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let pod = running(on(pod("a"), "n"), Some(10));
        assert!(is_available(&pod, 0, at(10)));
        assert!(!is_available(&pod, 5, at(14)));
        assert!(is_available(&pod, 5, at(15)));
        assert_eq!(available_at(&pod, 5), Some(at(15)));
        let not_ready = running(on(pod_named("b"), "n"), None);
        assert!(!is_available(&not_ready, 0, at(100)));
    }

    fn pod_named(name: &str) -> Pod {
        pod(name)
    }

    #[test]
    fn finished_and_terminating_pods_are_not_active() {
        let mut done = pod("done");
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        assert!(!is_active(&done));
        let mut leaving = pod("leaving");
        leaving.metadata.deletion_timestamp = Some(Time(at(1)));
        assert!(!is_active(&leaving));
        assert!(is_active(&pod("new")));
    }

    #[test]
    fn deletion_order_follows_kubernetes_ranking() {
        let unscheduled = pod("unscheduled");
        let pending = on(pod("pending"), "n1");
        let not_ready = running(on(pod("not-ready"), "n1"), None);
        let ready_recently = running(on(pod("ready-recently"), "n2"), Some(50));
        let ready_long = running(on(pod("ready-long"), "n3"), Some(5));
        let mut restarted = running(on(pod("restarted"), "n4"), Some(5));
        if let Some(status) = restarted.status.as_mut() {
            status.container_statuses = Some(vec![ContainerStatus {
                restart_count: 3,
                ..ContainerStatus::default()
            }]);
        }
        let mut older = running(on(pod("older"), "n5"), Some(5));
        older.metadata.creation_timestamp = Some(Time(at(-100)));
        let mut pods: Vec<Arc<Pod>> = [
            older,
            ready_long,
            restarted,
            ready_recently,
            not_ready,
            pending,
            unscheduled,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let related = pods.clone();
        sort_for_deletion(&mut pods, &related);
        let names: Vec<&str> = pods
            .iter()
            .map(|pod| pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "ready-recently",
                "restarted",
                "ready-long",
                "older"
            ]
        );
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = running(on(pod("a"), "crowded"), Some(5));
        let b = running(on(pod("b"), "crowded"), Some(5));
        let c = running(on(pod("c"), "alone"), Some(5));
        let mut pods = vec![Arc::new(c), Arc::new(a), Arc::new(b)];
        let related = pods.clone();
        sort_for_deletion(&mut pods, &related);
        assert_eq!(pods[2].metadata.name.as_deref(), Some("c"));
    }

    #[test]
    fn generated_name_prefixes_fit() {
        assert_eq!(generate_name_prefix("web"), "web-");
        let long = "x".repeat(80);
        assert_eq!(generate_name_prefix(&long).len(), 58);
    }

    #[test]
    fn permutation_is_applied() {
        let mut items = vec!['a', 'b', 'c', 'd'];
        apply_permutation(&mut items, vec![2, 0, 3, 1]);
        assert_eq!(items, ['c', 'a', 'd', 'b']);
    }
}
