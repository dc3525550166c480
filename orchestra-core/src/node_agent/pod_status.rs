//! A pod's status as the node agent reports it, computed from what the runtime says of its
//! sandbox and containers (kubelet's `generateAPIPodStatus` and `getPhase`).
//!
//! Pure: the agent gathers an [`ObservedPod`] (runtime container statuses, probe results, the
//! back-off it is waiting out) and [`pod_status`] turns it into the `PodStatus` it writes,
//! keeping each condition's `lastTransitionTime` while its status does not change.

use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as K8sContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as K8sContainerStatus, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::container_runtime::{ContainerState, ContainerStatus, IMAGE_ID_ANNOTATION};

/// The scheme prefix of container ids in pod statuses (`process://<id>`), naming the runtime.
pub type RuntimeScheme = str;

/// What the agent knows of one container of the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedContainer {
    /// The container's name in the pod spec.
    pub name: String,
    /// The runtime's status of its latest instance, if one was created.
    pub current: Option<ContainerStatus>,
    /// The runtime's status of the instance before it (for `lastState`).
    pub previous: Option<ContainerStatus>,
    /// Whether its readiness probe passes (true when it has none and runs).
    pub ready: bool,
    /// Whether its startup probe passed (true when it has none and runs).
    pub started: bool,
    /// Why it is not running, when the agent holds it back: `(reason, message)`, such as
    /// `("CrashLoopBackOff", "back-off 20s restarting failed container=web pod=web-1_default(uid)")`
    /// or `("ContainerCreating", "")`.
    pub waiting: Option<(String, String)>,
}

/// What the agent knows of a pod: its sandbox and every container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// Whether its sandbox runs (Kubernetes' `PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// Its addresses, primary first.
    pub pod_ips: Vec<IpAddr>,
    /// The node's address.
    pub host_ip: Option<IpAddr>,
    /// When the agent first took the pod on.
    pub start_time: Option<Timestamp>,
    /// The init containers, in spec order.
    pub init_containers: Vec<ObservedContainer>,
    /// The containers, in spec order.
    pub containers: Vec<ObservedContainer>,
}

fn time(timestamp: Timestamp) -> Time {
    Time(timestamp)
}

/// The pod-status form of one container.
fn container_status(observed: &ObservedContainer, scheme: &RuntimeScheme) -> K8sContainerStatus {
    let state_of = |status: &ContainerStatus| match status.state {
        ContainerState::Running => K8sContainerState {
            running: Some(ContainerStateRunning {
                started_at: status.started_at.map(time),
            }),
            ..K8sContainerState::default()
        },
        ContainerState::Exited => K8sContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: status.exit_code.unwrap_or(0),
                reason: Some(status.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(status.message.clone()).filter(|m| !m.is_empty()),
                started_at: status.started_at.map(time),
                finished_at: status.finished_at.map(time),
                container_id: Some(format!("{scheme}://{}", status.id)),
                signal: None,
            }),
            ..K8sContainerState::default()
        },
        ContainerState::Created | ContainerState::Unknown => K8sContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".to_owned()),
                message: None,
            }),
            ..K8sContainerState::default()
        },
    };
    let mut state = match (&observed.current, &observed.waiting) {
        (_, Some((reason, message))) => K8sContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: Some(message.clone()).filter(|m| !m.is_empty()),
            }),
            ..K8sContainerState::default()
        },
        (Some(current), None) => state_of(current),
        (None, None) => K8sContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".to_owned()),
                message: None,
            }),
            ..K8sContainerState::default()
        },
    };
    // An exited instance being held back reports itself in lastState, as kubelet does.
    let (last_state, restart_count) = match (&observed.current, &observed.waiting) {
        (Some(current), Some(_)) if current.state == ContainerState::Exited => (
            Some(state_of(current)),
            current.metadata.attempt.saturating_add(1),
        ),
        (Some(current), _) => (
            observed.previous.as_ref().map(state_of),
            current.metadata.attempt,
        ),
        (None, _) => (None, 0),
    };
    if state.waiting.is_none() && state.running.is_none() && state.terminated.is_none() {
        state = K8sContainerState::default();
    }
    let running = observed
        .current
        .as_ref()
        .is_some_and(|c| c.state == ContainerState::Running)
        && observed.waiting.is_none();
    K8sContainerStatus {
        name: observed.name.clone(),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready: running && observed.ready,
        started: Some(running && observed.started),
        restart_count: i32::try_from(restart_count).unwrap_or(i32::MAX),
        image: observed
            .current
            .as_ref()
            .map(|c| c.image.clone())
            .unwrap_or_default(),
        image_id: observed
            .current
            .as_ref()
            .and_then(|c| c.annotations.get(IMAGE_ID_ANNOTATION).cloned())
            .unwrap_or_default(),
        container_id: observed
            .current
            .as_ref()
            .map(|c| format!("{scheme}://{}", c.id)),
        ..K8sContainerStatus::default()
    }
}

/// How a container stands, for the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Waiting,
    Running,
    Succeeded,
    Failed,
}

fn standing(observed: &ObservedContainer) -> Standing {
    match (&observed.current, &observed.waiting) {
        // Held back after an exit: it counts as what it ended as for the phase (a crash-looping
        // container under restartPolicy Always keeps the pod Running).
        (Some(current), Some(_)) if current.state == ContainerState::Exited => {
            if current.exit_code == Some(0) {
                Standing::Succeeded
            } else {
                Standing::Failed
            }
        }
        (_, Some(_)) | (None, None) => Standing::Waiting,
        (Some(current), None) => match current.state {
            ContainerState::Running => Standing::Running,
            ContainerState::Exited if current.exit_code == Some(0) => Standing::Succeeded,
            ContainerState::Exited => Standing::Failed,
            ContainerState::Created | ContainerState::Unknown => Standing::Waiting,
        },
    }
}

/// The pod's phase (kubelet's `getPhase`): Pending until the init containers have succeeded and
/// every container has started; Running while one runs or will be restarted; Succeeded when all
/// ended with 0; Failed when all ended and one failed without restart, or an init container failed
/// under `restartPolicy: Never`.
pub fn phase(restart_policy: &str, observed: &ObservedPod) -> &'static str {
    let never = restart_policy == "Never";
    for init in &observed.init_containers {
        match standing(init) {
            Standing::Succeeded => {}
            Standing::Failed if never => return "Failed",
            _ => return "Pending",
        }
    }
    let standings: Vec<Standing> = observed.containers.iter().map(standing).collect();
    let count = |wanted: Standing| standings.iter().filter(|s| **s == wanted).count();
    let (waiting, running) = (count(Standing::Waiting), count(Standing::Running));
    let failed = count(Standing::Failed);
    // A container that has never started keeps the pod Pending, even while others run.
    if standings.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match restart_policy {
        "Always" => "Running",
        _ if failed == 0 => "Succeeded",
        "Never" => "Failed",
        // OnFailure: the failed ones will be restarted.
        _ => "Running",
    }
}

/// The condition `kind` with `status`, keeping the previous transition time when the status is
/// unchanged.
fn condition(
    kind: &str,
    status: bool,
    reason: Option<&str>,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodCondition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: kind.to_owned(),
        status,
        reason: reason.map(str::to_owned),
        last_transition_time: Some(last_transition),
        ..PodCondition::default()
    }
}

/// The status the agent writes for `pod` from what it observed, with container ids under
/// `scheme` (`process`, `docker`, ...). `previous` is the pod's current status (its
/// `PodScheduled` condition and transition times are kept).
pub fn pod_status(
    pod: &Pod,
    observed: &ObservedPod,
    scheme: &RuntimeScheme,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.restart_policy.as_deref())
        .unwrap_or("Always");
    let phase = phase(restart_policy, observed);
    let initialized = observed
        .init_containers
        .iter()
        .all(|init| standing(init) == Standing::Succeeded);
    let containers: Vec<K8sContainerStatus> = observed
        .containers
        .iter()
        .map(|c| container_status(c, scheme))
        .collect();
    let containers_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let not_ready_reason = if terminal {
        Some("PodCompleted")
    } else if containers_ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            observed.sandbox_ready,
            None,
            previous,
            now,
        ),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            previous,
            now,
        ),
        condition(
            "Ready",
            containers_ready && !terminal,
            not_ready_reason,
            previous,
            now,
        ),
        condition(
            "ContainersReady",
            containers_ready && !terminal,
            not_ready_reason,
            previous,
            now,
        ),
    ];
    if let Some(scheduled) = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(scheduled.clone());
    }
    let pod_ips: Vec<PodIP> = observed
        .pod_ips
        .iter()
        .map(|ip| PodIP { ip: ip.to_string() })
        .collect();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: observed.host_ip.map(|ip| ip.to_string()),
        pod_ip: observed.pod_ips.first().map(IpAddr::to_string),
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time: observed.start_time.map(time),
        init_container_statuses: (!observed.init_containers.is_empty()).then(|| {
            observed
                .init_containers
                .iter()
                .map(|c| container_status(c, scheme))
                .collect()
        }),
        container_statuses: Some(containers),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        nominated_node_name: None,
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container_runtime::ContainerMetadata;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or_default()
    }

    fn runtime_status(
        name: &str,
        attempt: u32,
        state: ContainerState,
        exit: Option<i32>,
    ) -> ContainerStatus {
        ContainerStatus {
            id: format!("{name}-{attempt}"),
            pod_sandbox_id: "s".to_owned(),
            metadata: ContainerMetadata {
                name: name.to_owned(),
                attempt,
            },
            state,
            created_at: at(0),
            started_at: Some(at(1)),
            finished_at: (state == ContainerState::Exited).then(|| at(5)),
            exit_code: exit,
            image: "hello:1".to_owned(),
            reason: match exit {
                Some(0) => "Completed".to_owned(),
                Some(_) => "Error".to_owned(),
                None => String::new(),
            },
            message: String::new(),
            log_path: None,
            pid: None,
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    fn running(name: &str) -> ObservedContainer {
        ObservedContainer {
            name: name.to_owned(),
            current: Some(runtime_status(name, 0, ContainerState::Running, None)),
            ready: true,
            started: true,
            ..ObservedContainer::default()
        }
    }

    fn exited(name: &str, attempt: u32, code: i32) -> ObservedContainer {
        ObservedContainer {
            name: name.to_owned(),
            current: Some(runtime_status(
                name,
                attempt,
                ContainerState::Exited,
                Some(code),
            )),
            ..ObservedContainer::default()
        }
    }

    fn waiting(name: &str) -> ObservedContainer {
        ObservedContainer {
            name: name.to_owned(),
            waiting: Some(("ContainerCreating".to_owned(), String::new())),
            ..ObservedContainer::default()
        }
    }

    fn pod_with(init: Vec<ObservedContainer>, containers: Vec<ObservedContainer>) -> ObservedPod {
        ObservedPod {
            sandbox_ready: true,
            init_containers: init,
            containers,
            ..ObservedPod::default()
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let cases: Vec<(&str, ObservedPod, &str)> = vec![
            ("Always", pod_with(vec![], vec![]), "Pending"),
            ("Always", pod_with(vec![], vec![waiting("a")]), "Pending"),
            (
                "Always",
                pod_with(vec![], vec![running("a"), waiting("b")]),
                "Pending",
            ),
            (
                "Always",
                pod_with(vec![], vec![running("a"), exited("b", 0, 1)]),
                "Running",
            ),
            (
                "Always",
                pod_with(vec![], vec![exited("a", 0, 0)]),
                "Running",
            ),
            (
                "OnFailure",
                pod_with(vec![], vec![exited("a", 0, 0)]),
                "Succeeded",
            ),
            (
                "OnFailure",
                pod_with(vec![], vec![exited("a", 0, 1)]),
                "Running",
            ),
            (
                "Never",
                pod_with(vec![], vec![exited("a", 0, 0), exited("b", 0, 0)]),
                "Succeeded",
            ),
            (
                "Never",
                pod_with(vec![], vec![exited("a", 0, 0), exited("b", 0, 2)]),
                "Failed",
            ),
            (
                "Never",
                pod_with(vec![exited("i", 0, 1)], vec![waiting("a")]),
                "Failed",
            ),
            (
                "Always",
                pod_with(vec![exited("i", 0, 1)], vec![waiting("a")]),
                "Pending",
            ),
            (
                "Always",
                pod_with(vec![running("i")], vec![waiting("a")]),
                "Pending",
            ),
            (
                "Always",
                pod_with(vec![exited("i", 0, 0)], vec![running("a")]),
                "Running",
            ),
        ];
        for (policy, observed, want) in cases {
            assert_eq!(phase(policy, &observed), want, "{policy} {observed:?}");
        }
    }

    #[test]
    fn a_crash_looping_container_reports_back_off_last_state_and_restarts() {
        let mut pod = Pod::default();
        pod.spec.get_or_insert_default().restart_policy = Some("Always".to_owned());
        let mut web = exited("web", 2, 1);
        web.waiting = Some((
            "CrashLoopBackOff".to_owned(),
            "back-off 40s restarting failed container=web".to_owned(),
        ));
        let status = pod_status(&pod, &pod_with(vec![], vec![web]), "process", None, at(10));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let web = &status.container_statuses.unwrap_or_default()[0];
        assert_eq!(web.restart_count, 3);
        assert!(!web.ready);
        let waiting = web.state.as_ref().and_then(|s| s.waiting.as_ref()).cloned();
        assert_eq!(
            waiting.and_then(|w| w.reason),
            Some("CrashLoopBackOff".to_owned())
        );
        let last = web
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .cloned();
        assert_eq!(last.map(|t| t.exit_code), Some(1));
    }

    #[test]
    fn readiness_conditions_and_addresses() {
        let pod = Pod::default();
        let mut observed = pod_with(vec![exited("init", 0, 0)], vec![running("a"), running("b")]);
        observed.pod_ips = vec!["127.10.0.5".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))];
        observed.start_time = Some(at(0));
        let ready = pod_status(&pod, &observed, "process", None, at(10));
        let find = |status: &PodStatus, kind: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == kind)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(find(&ready, "Ready").status, "True");
        assert_eq!(find(&ready, "Initialized").status, "True");
        assert_eq!(ready.pod_ip.as_deref(), Some("127.10.0.5"));
        assert_eq!(
            ready
                .container_statuses
                .as_ref()
                .map(|c| c[0].container_id.clone()),
            Some(Some("process://a-0".to_owned()))
        );

        // Readiness lost later: Ready turns False with a new transition time; unchanged
        // conditions keep theirs.
        observed.containers[1].ready = false;
        let not_ready = pod_status(&pod, &observed, "process", Some(&ready), at(20));
        assert_eq!(find(&not_ready, "Ready").status, "False");
        assert_eq!(
            find(&not_ready, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            find(&not_ready, "Ready").last_transition_time,
            Some(Time(at(20)))
        );
        assert_eq!(
            find(&not_ready, "Initialized").last_transition_time,
            Some(Time(at(10)))
        );
    }

    #[test]
    fn completed_pods_are_not_ready() {
        let mut pod = Pod::default();
        pod.spec.get_or_insert_default().restart_policy = Some("Never".to_owned());
        let status = pod_status(
            &pod,
            &pod_with(vec![], vec![exited("job", 0, 0)]),
            "process",
            None,
            at(1),
        );
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }
}
