//! What the scheduler knows of one node: the node, the pods bound to it and what they use.
//!
//! [`NodeInfo`] is kube-scheduler's `framework.NodeInfo`, kept up to date incrementally: adding or
//! removing a pod adjusts the totals by that pod's own amounts, remembered from when it was
//! added, so no operation rescans the node's pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::resources::{Resource, pod_non_zero_requests, pod_requests};

/// The wildcard host IP: a host port bound on it conflicts with the same port on every IP.
pub const WILDCARD_HOST_IP: &str = "0.0.0.0";

/// The protocol of a host port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP, the default when a port names none.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol of a container port's `protocol` field: `UDP`, `SCTP`, and otherwise TCP
    /// (the default; validation rejects other values).
    pub fn parse(protocol: Option<&str>) -> Protocol {
        match protocol {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    /// The name as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// A host port a pod asks for: protocol, host IP (empty means [`WILDCARD_HOST_IP`]) and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    /// The protocol.
    pub protocol: Protocol,
    /// The host IP, [`WILDCARD_HOST_IP`] for all.
    pub host_ip: String,
    /// The port, always positive.
    pub port: i32,
}

/// The host ports a pod's containers ask for (those with a positive `hostPort`), in order.
///
/// As in Kubernetes, an empty host IP means [`WILDCARD_HOST_IP`] and an empty protocol TCP.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut ports = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return ports;
    };
    for container in &spec.containers {
        for port in container.ports.iter().flatten() {
            let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") => WILDCARD_HOST_IP.to_owned(),
                Some(ip) => ip.to_owned(),
            };
            ports.push(HostPort {
                protocol: Protocol::parse(port.protocol.as_deref()),
                host_ip,
                port: host_port,
            });
        }
    }
    ports
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PortUse {
    /// How many bindings of this protocol and port are on the wildcard IP.
    wildcard: u32,
    /// How many bindings on each specific IP.
    ips: BTreeMap<String, u32>,
}

/// The host ports in use on a node, counted by protocol, port and host IP (Kubernetes'
/// `HostPortInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPortInfo {
    ports: BTreeMap<(Protocol, i32), PortUse>,
}

impl HostPortInfo {
    /// Records one use of `port`.
    pub fn add(&mut self, port: &HostPort) {
        let entry = self.ports.entry((port.protocol, port.port)).or_default();
        if port.host_ip == WILDCARD_HOST_IP {
            entry.wildcard = entry.wildcard.saturating_add(1);
        } else {
            match entry.ips.get_mut(port.host_ip.as_str()) {
                Some(count) => *count = count.saturating_add(1),
                None => {
                    entry.ips.insert(port.host_ip.clone(), 1);
                }
            }
        }
    }

    /// Forgets one use of `port`.
    pub fn remove(&mut self, port: &HostPort) {
        let key = (port.protocol, port.port);
        let Some(entry) = self.ports.get_mut(&key) else {
            return;
        };
        if port.host_ip == WILDCARD_HOST_IP {
            entry.wildcard = entry.wildcard.saturating_sub(1);
        } else if let Some(count) = entry.ips.get_mut(port.host_ip.as_str()) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                entry.ips.remove(port.host_ip.as_str());
            }
        }
        if entry.wildcard == 0 && entry.ips.is_empty() {
            self.ports.remove(&key);
        }
    }

    /// Whether binding `port` on `host_ip` (empty for the wildcard) conflicts with a port in use:
    /// the same protocol and port on the same IP, or on the wildcard IP, or — when `host_ip` is
    /// the wildcard — on any IP.
    pub fn conflicts(&self, protocol: Protocol, host_ip: &str, port: i32) -> bool {
        if port <= 0 {
            return false;
        }
        let Some(entry) = self.ports.get(&(protocol, port)) else {
            return false;
        };
        if host_ip.is_empty() || host_ip == WILDCARD_HOST_IP {
            return entry.wildcard > 0 || !entry.ips.is_empty();
        }
        entry.wildcard > 0 || entry.ips.contains_key(host_ip)
    }

    /// Whether no port is in use.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// What a node remembers of each of its pods, so that removing the pod undoes exactly what adding
/// it did.
#[derive(Clone, Debug)]
struct PodEntry {
    pod: Arc<Pod>,
    /// The key of its group in [`NodeInfo::required_anti_affinity_groups`], if it has required
    /// anti-affinity.
    anti_affinity_group: Option<Arc<str>>,
    requests: Resource,
    non_zero_milli_cpu: i64,
    non_zero_memory: i64,
    ports: Vec<HostPort>,
}

/// A node and the pods bound (or assumed bound) to it, with the totals the plugins read.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use orchestra_core::k8s::api::core::v1::{Node, Pod};
/// use orchestra_core::scheduler::node_info::NodeInfo;
///
/// let node: Node = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "n1"},
///     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
/// }))?;
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "p", "namespace": "default"},
///     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
/// }))?;
/// let mut info = NodeInfo::new(Arc::new(node));
/// info.add_pod(&pod);
/// assert_eq!(info.requested().milli_cpu, 1000);
/// assert_eq!(info.non_zero_requested().memory, 200 * 1024 * 1024);
/// assert!(info.remove_pod(&pod));
/// assert_eq!(info.pod_count(), 0);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct NodeInfo {
    node: Arc<Node>,
    /// `spec.unschedulable`, kept beside the totals so that filters need not reach the node.
    unschedulable: bool,
    /// Whether `spec.taints` is not empty.
    tainted: bool,
    allocatable: Resource,
    /// The pods by `namespace/name`. Keys and entries are shared, so that cloning a node info
    /// (the cache does when a snapshot holds the previous version) copies pointers, not pods.
    pods: BTreeMap<Arc<str>, Arc<PodEntry>>,
    requested: Resource,
    non_zero_requested: Resource,
    used_ports: HostPortInfo,
    /// How many of its pods have (required or preferred) pod affinity or anti-affinity.
    pods_with_affinity: usize,
    /// How many of its pods have required pod anti-affinity.
    pods_with_required_anti_affinity: usize,
    /// Pod counts by namespace, label key and label value (the strings shared, for cheap
    /// clones).
    labels: LabelCounts,
    /// Pods with required anti-affinity, grouped by namespace and terms.
    anti_affinity_groups: BTreeMap<Arc<str>, AntiAffinityGroup>,
    generation: u64,
}

/// Pod counts by namespace, label key and label value.
type LabelCounts = BTreeMap<Arc<str>, BTreeMap<Arc<str>, BTreeMap<Arc<str>, usize>>>;

/// The pods of a node that share a namespace and the same required anti-affinity terms: what
/// they forbid is the same, so an incoming pod is checked once per group, not once per pod.
#[derive(Clone, Debug)]
pub struct AntiAffinityGroup {
    /// One of the pods (any: they have the same namespace and terms).
    pub pod: Arc<Pod>,
    /// How many pods of the node are in the group.
    pub count: usize,
}

fn anti_affinity_group_key(pod: &Pod) -> Option<String> {
    if !has_required_anti_affinity(pod) {
        return None;
    }
    let terms = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.pod_anti_affinity.as_ref())
        .and_then(|anti| {
            anti.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let mut key = pod.metadata.namespace.clone().unwrap_or_default();
    key.push('\0');
    key.push_str(&serde_json::to_string(&terms).unwrap_or_default());
    Some(key)
}

/// Whether the pod has any pod affinity or anti-affinity term (Kubernetes' `PodsWithAffinity`).
pub fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.affinity.as_ref())
        .is_some_and(|affinity| {
            affinity.pod_affinity.is_some() || affinity.pod_anti_affinity.is_some()
        })
}

/// Whether the pod has a required pod anti-affinity term (Kubernetes'
/// `PodsWithRequiredAntiAffinity`).
pub fn has_required_anti_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.pod_anti_affinity.as_ref())
        .and_then(|anti| {
            anti.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty())
}

/// The key of a pod on its node: `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let mut key = String::with_capacity(namespace.len() + name.len() + 1);
    key.push_str(namespace);
    key.push('/');
    key.push_str(name);
    key
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = allocatable_of(&node);
        NodeInfo {
            unschedulable: unschedulable_of(&node),
            tainted: tainted(&node),
            node,
            allocatable,
            pods: BTreeMap::new(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            used_ports: HostPortInfo::default(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            labels: BTreeMap::new(),
            anti_affinity_groups: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Replaces the node object (after an update), keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = allocatable_of(&node);
        self.unschedulable = unschedulable_of(&node);
        self.tainted = tainted(&node);
        self.node = node;
        self.generation = self.generation.wrapping_add(1);
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node, shared.
    pub fn node_arc(&self) -> &Arc<Node> {
        &self.node
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// Reads a word of each part of the node info that the default filters and scores read
    /// (flags, allocatable, requested, pod count, host ports), so that their cache lines are
    /// fetched now.
    ///
    /// The scheduling cycle warms a batch of nodes this way before filtering them: the loads of
    /// a batch miss the cache together instead of one after the other, each behind a node's
    /// whole filter chain. It changes nothing.
    pub fn warm(&self) {
        std::hint::black_box((
            self.unschedulable,
            self.allocatable.milli_cpu,
            self.requested.milli_cpu,
            self.non_zero_requested.milli_cpu,
            self.pods.len(),
            self.used_ports.is_empty(),
        ));
    }

    /// Whether the node has taints (`spec.taints` not empty).
    pub fn tainted(&self) -> bool {
        self.tainted
    }

    /// The node's name (empty if it has none).
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// What the node offers to pods (`status.allocatable`).
    pub fn allocatable(&self) -> &Resource {
        &self.allocatable
    }

    /// The sum of its pods' requests ([`pod_requests`]).
    pub fn requested(&self) -> &Resource {
        &self.requested
    }

    /// The sum of its pods' CPU and memory requests counting defaults for missing requests
    /// ([`pod_non_zero_requests`]); only `milli_cpu` and `memory` are set. Scoring reads this.
    pub fn non_zero_requested(&self) -> &Resource {
        &self.non_zero_requested
    }

    /// The host ports its pods use.
    pub fn used_ports(&self) -> &HostPortInfo {
        &self.used_ports
    }

    /// How many pods are on it.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The keys (`namespace/name`) of its pods, in order.
    pub fn pod_keys(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(|key| &**key)
    }

    /// Its pods, in key order.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<Pod>> {
        self.pods.values().map(|entry| &entry.pod)
    }

    /// The pod with this key (`namespace/name`), if it is on the node.
    pub fn pod(&self, key: &str) -> Option<&Arc<Pod>> {
        self.pods.get(key).map(|entry| &entry.pod)
    }

    /// How many of its pods have pod affinity or anti-affinity terms ([`has_pod_affinity`]).
    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    /// How many of its pods have required pod anti-affinity terms
    /// ([`has_required_anti_affinity`]).
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// How many of its pods in `namespace` have the label `key=value`: answers a one-label
    /// selector without looking at the pods.
    pub fn count_pods_with_label(&self, namespace: &str, key: &str, value: &str) -> usize {
        self.labels
            .get(namespace)
            .and_then(|keys| keys.get(key))
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// Its pods with required anti-affinity, one entry per namespace and set of terms.
    pub fn required_anti_affinity_groups(&self) -> impl Iterator<Item = &AntiAffinityGroup> {
        self.anti_affinity_groups.values()
    }

    /// Its pods with required anti-affinity, one entry per namespace and set of terms, each
    /// with the key of its group: a string made of the namespace and the terms, the same for
    /// the same group on every node (so groups can be merged across nodes).
    pub fn required_anti_affinity_groups_by_key(
        &self,
    ) -> impl Iterator<Item = (&str, &AntiAffinityGroup)> {
        self.anti_affinity_groups
            .iter()
            .map(|(key, group)| (&**key, group))
    }

    /// Its pods' labels counted: `(namespace, key, value, how many pods of the namespace have
    /// the label key=value)`, in order, every count positive (what
    /// [`count_pods_with_label`](NodeInfo::count_pods_with_label) answers).
    pub fn pod_label_counts(&self) -> impl Iterator<Item = (&str, &str, &str, usize)> {
        self.labels.iter().flat_map(|(namespace, keys)| {
            keys.iter().flat_map(move |(key, values)| {
                values
                    .iter()
                    .map(move |(value, count)| (&**namespace, &**key, &**value, *count))
            })
        })
    }

    /// Whether the pod with this key (`namespace/name`) is on it.
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// A counter bumped by every change, so that a snapshot can tell which nodes changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds a pod (or replaces the pod with the same `namespace/name`), adjusting the totals.
    /// Keeps a copy of the pod; [`add_pod_arc`](NodeInfo::add_pod_arc) shares one instead.
    pub fn add_pod(&mut self, pod: &Pod) {
        self.add_pod_arc(Arc::new(pod.clone()));
    }

    /// Adds a shared pod (or replaces the pod with the same `namespace/name`), adjusting the
    /// totals.
    pub fn add_pod_arc(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        self.remove_key(&key);
        let non_zero = pod_non_zero_requests(&pod);
        if has_pod_affinity(&pod) {
            self.pods_with_affinity += 1;
        }
        if has_required_anti_affinity(&pod) {
            self.pods_with_required_anti_affinity += 1;
        }
        // The group's key, shared with the group's entry when there is one.
        let anti_affinity_group: Option<Arc<str>> = anti_affinity_group_key(&pod).map(|key| {
            match self.anti_affinity_groups.get_key_value(key.as_str()) {
                Some((shared, _)) => Arc::clone(shared),
                None => Arc::from(key),
            }
        });
        if let Some(group) = &anti_affinity_group {
            self.anti_affinity_groups
                .entry(group.clone())
                .and_modify(|group| group.count += 1)
                .or_insert_with(|| AntiAffinityGroup {
                    pod: pod.clone(),
                    count: 1,
                });
        }
        if let Some(labels) = &pod.metadata.labels {
            let keys = self
                .labels
                .entry(Arc::from(pod.metadata.namespace.as_deref().unwrap_or("")))
                .or_default();
            for (key, value) in labels {
                *keys
                    .entry(Arc::from(key.as_str()))
                    .or_default()
                    .entry(Arc::from(value.as_str()))
                    .or_default() += 1;
            }
        }
        let entry = PodEntry {
            anti_affinity_group,
            requests: pod_requests(&pod),
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            ports: pod_host_ports(&pod),
            pod,
        };
        self.account(&entry, true);
        self.pods.insert(Arc::from(key), Arc::new(entry));
        self.generation = self.generation.wrapping_add(1);
    }

    /// Removes a pod by its `namespace/name`, undoing what adding it did (whatever the pod object
    /// looks like now). Returns whether it was there.
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        self.remove_key(&pod_key(pod))
    }

    /// Removes the pod with key `namespace/name`. Returns whether it was there.
    pub fn remove_key(&mut self, key: &str) -> bool {
        let Some(entry) = self.pods.remove(key) else {
            return false;
        };
        if has_pod_affinity(&entry.pod) {
            self.pods_with_affinity = self.pods_with_affinity.saturating_sub(1);
        }
        if has_required_anti_affinity(&entry.pod) {
            self.pods_with_required_anti_affinity =
                self.pods_with_required_anti_affinity.saturating_sub(1);
        }
        if let Some(key) = &entry.anti_affinity_group
            && let Some(group) = self.anti_affinity_groups.get_mut(key)
        {
            group.count = group.count.saturating_sub(1);
            if group.count == 0 {
                self.anti_affinity_groups.remove(key);
            } else if Arc::ptr_eq(&group.pod, &entry.pod) {
                // Keep a pod that is still on the node as the group's example.
                if let Some(other) = self
                    .pods
                    .values()
                    .find(|other| other.anti_affinity_group.as_deref() == Some(&**key))
                {
                    group.pod = other.pod.clone();
                }
            }
        }
        if let Some(labels) = &entry.pod.metadata.labels {
            let namespace = entry.pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(keys) = self.labels.get_mut(namespace) {
                for (key, value) in labels {
                    if let Some(values) = keys.get_mut(key.as_str()) {
                        if let Some(count) = values.get_mut(value.as_str()) {
                            *count = count.saturating_sub(1);
                            if *count == 0 {
                                values.remove(value.as_str());
                            }
                        }
                        if values.is_empty() {
                            keys.remove(key.as_str());
                        }
                    }
                }
                if keys.is_empty() {
                    self.labels.remove(namespace);
                }
            }
        }
        self.account(&entry, false);
        self.generation = self.generation.wrapping_add(1);
        true
    }
}

impl NodeInfo {
    /// Adds (`add`) or takes away a pod's requests and host ports from the node's totals: what
    /// adding a pod does, removing it undoes exactly.
    fn account(&mut self, entry: &PodEntry, add: bool) {
        let step = |total: i64, amount: i64| {
            if add {
                total.saturating_add(amount)
            } else {
                total.saturating_sub(amount)
            }
        };
        if add {
            self.requested.add(&entry.requests);
        } else {
            self.requested.sub(&entry.requests);
        }
        self.non_zero_requested.milli_cpu =
            step(self.non_zero_requested.milli_cpu, entry.non_zero_milli_cpu);
        self.non_zero_requested.memory =
            step(self.non_zero_requested.memory, entry.non_zero_memory);
        for port in &entry.ports {
            if add {
                self.used_ports.add(port);
            } else {
                self.used_ports.remove(port);
            }
        }
    }
}

fn unschedulable_of(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false)
}

fn tainted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| !taints.is_empty())
}

fn allocatable_of(node: &Node) -> Resource {
    node.status
        .as_ref()
        .and_then(|status| status.allocatable.as_ref())
        .map(Resource::from_list)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "example.com/gpu": "2"}}
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    #[test]
    fn add_and_remove_are_inverse() {
        let mut info = NodeInfo::new(node());
        assert_eq!(info.allocatable().milli_cpu, 4000);
        assert_eq!(info.allocatable().allowed_pods, 110);
        assert_eq!(info.allocatable().get("example.com/gpu"), 2);
        let a = pod(
            "a",
            json!([{"name": "c", "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}},
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]),
        );
        let b = pod("b", json!([{"name": "c"}]));
        info.add_pod(&a);
        info.add_pod(&b);
        assert_eq!(info.pod_count(), 2);
        assert_eq!(info.requested().milli_cpu, 1000);
        assert_eq!(info.requested().get("example.com/gpu"), 1);
        assert_eq!(info.non_zero_requested().milli_cpu, 1100);
        assert!(info.used_ports().conflicts(Protocol::Tcp, "", 8080));
        assert_eq!(info.pod_keys().collect::<Vec<_>>(), ["ns/a", "ns/b"]);
        // Re-adding replaces rather than double counts.
        info.add_pod(&a);
        assert_eq!(info.requested().milli_cpu, 1000);
        assert!(info.remove_pod(&a));
        assert!(!info.remove_pod(&a));
        assert_eq!(info.requested(), &Resource::default());
        assert_eq!(info.non_zero_requested().milli_cpu, 100);
        assert!(info.used_ports().is_empty());
        assert!(info.remove_key("ns/b"));
        assert_eq!(info.non_zero_requested(), &Resource::default());
    }

    #[test]
    fn host_port_conflicts() {
        let mut ports = HostPortInfo::default();
        let specific = HostPort {
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".into(),
            port: 80,
        };
        ports.add(&specific);
        // Same IP, same protocol: conflict; other protocol: none.
        assert!(ports.conflicts(Protocol::Tcp, "127.0.0.1", 80));
        assert!(!ports.conflicts(Protocol::Udp, "127.0.0.1", 80));
        // Another specific IP: none; the wildcard: conflict.
        assert!(!ports.conflicts(Protocol::Tcp, "127.0.0.2", 80));
        assert!(ports.conflicts(Protocol::Tcp, "0.0.0.0", 80));
        assert!(ports.conflicts(Protocol::Tcp, "", 80));
        assert!(!ports.conflicts(Protocol::Tcp, "127.0.0.1", 81));
        ports.remove(&specific);
        assert!(ports.is_empty());
        // A wildcard binding conflicts with every IP.
        let wildcard = HostPort {
            protocol: Protocol::Udp,
            host_ip: WILDCARD_HOST_IP.into(),
            port: 53,
        };
        ports.add(&wildcard);
        ports.add(&wildcard);
        assert!(ports.conflicts(Protocol::Udp, "10.0.0.1", 53));
        ports.remove(&wildcard);
        assert!(ports.conflicts(Protocol::Udp, "10.0.0.1", 53));
        ports.remove(&wildcard);
        assert!(!ports.conflicts(Protocol::Udp, "10.0.0.1", 53));
        assert!(!ports.conflicts(Protocol::Udp, "10.0.0.1", 0));
    }

    #[test]
    fn host_ports_of_a_pod() {
        let p = pod(
            "a",
            json!([{"name": "c", "ports": [
                {"containerPort": 80},
                {"containerPort": 81, "hostPort": 0},
                {"containerPort": 82, "hostPort": 9000, "protocol": "UDP", "hostIP": "10.0.0.1"},
                {"containerPort": 83, "hostPort": 9001, "hostIP": ""}
            ]}]),
        );
        let ports = pod_host_ports(&p);
        assert_eq!(ports.len(), 2);
        assert_eq!(
            ports[0],
            HostPort {
                protocol: Protocol::Udp,
                host_ip: "10.0.0.1".into(),
                port: 9000
            }
        );
        assert_eq!(ports[1].host_ip, WILDCARD_HOST_IP);
        assert_eq!(ports[1].protocol.as_str(), "TCP");
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn arb_pod() -> impl Strategy<Value = (usize, Pod)> {
            (
                0..6_usize,
                proptest::option::of(0..4000_i64),
                proptest::option::of(0..4096_i64),
                0..3_i64,
                proptest::option::of((0..2_usize, 0..3_usize, 1..4_i32)),
                (0..3_usize, proptest::option::of(0..2_usize)),
            )
                .prop_map(|(name, cpu, memory, gpu, port, (app, anti))| {
                    let mut requests = serde_json::Map::new();
                    if let Some(cpu) = cpu {
                        requests.insert("cpu".into(), json!(format!("{cpu}m")));
                    }
                    if let Some(memory) = memory {
                        requests.insert("memory".into(), json!(format!("{memory}Mi")));
                    }
                    if gpu > 0 {
                        requests.insert("example.com/gpu".into(), json!(gpu.to_string()));
                    }
                    let ports = match port {
                        None => json!([]),
                        Some((protocol, ip, port)) => {
                            let protocol_name = ["TCP", "UDP"][protocol];
                            let host_ip = ["", "10.0.0.1", "10.0.0.2"][ip];
                            json!([{
                                "containerPort": 1,
                                "hostPort": port,
                                "protocol": protocol_name,
                                "hostIP": host_ip
                            }])
                        }
                    };
                    let mut p = pod(
                        &format!("p{name}"),
                        json!([{"name": "c", "resources": {"requests": requests}, "ports": ports}]),
                    );
                    p.metadata.labels = Some([("app".to_owned(), format!("a{app}"))].into());
                    if let (Some(anti), Some(spec)) = (anti, p.spec.as_mut()) {
                        let topology = ["kubernetes.io/hostname", "zone"][anti];
                        spec.affinity = serde_json::from_value(json!({"podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [{
                                "topologyKey": topology,
                                "labelSelector": {"matchLabels": {"app": "a0"}}
                            }]
                        }}))
                        .ok();
                    }
                    (name, p)
                })
        }

        proptest! {
            /// Any sequence of adds and removes leaves the same totals as adding the pods that
            /// remain to a fresh node.
            #[test]
            fn incremental_equals_recomputed(ops in proptest::collection::vec((any::<bool>(), arb_pod()), 0..40)) {
                let mut info = NodeInfo::new(node());
                let mut model: BTreeMap<usize, Pod> = BTreeMap::new();
                for (add, (name, p)) in ops {
                    if add {
                        info.add_pod(&p);
                        model.insert(name, p);
                    } else {
                        prop_assert_eq!(info.remove_pod(&p), model.remove(&name).is_some());
                    }
                }
                let mut fresh = NodeInfo::new(node());
                for p in model.values() {
                    fresh.add_pod(p);
                }
                prop_assert_eq!(info.requested(), fresh.requested());
                prop_assert_eq!(info.non_zero_requested(), fresh.non_zero_requested());
                prop_assert_eq!(info.used_ports(), fresh.used_ports());
                prop_assert!(info.pod_keys().eq(fresh.pod_keys()));
                for app in ["a0", "a1", "a2"] {
                    prop_assert_eq!(
                        info.count_pods_with_label("ns", "app", app),
                        model.values().filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get("app")).is_some_and(|v| v == app)).count()
                    );
                }
                prop_assert_eq!(info.pods_with_required_anti_affinity(), fresh.pods_with_required_anti_affinity());
                prop_assert_eq!(info.pods_with_affinity(), fresh.pods_with_affinity());
                let groups = |n: &NodeInfo| n.required_anti_affinity_groups().map(|g| (anti_affinity_group_key(&g.pod), g.count, n.has_pod(&pod_key(&g.pod)))).collect::<Vec<_>>();
                prop_assert_eq!(groups(&info), groups(&fresh));
                prop_assert!(groups(&info).iter().all(|(_, _, present)| *present));
                let keyed = |n: &NodeInfo| n.required_anti_affinity_groups_by_key().map(|(k, g)| (k.to_owned(), anti_affinity_group_key(&g.pod), g.count)).collect::<Vec<_>>();
                prop_assert_eq!(keyed(&info), keyed(&fresh));
                prop_assert!(keyed(&info).iter().all(|(k, key, _)| Some(k) == key.as_ref()));
                let labels = |n: &NodeInfo| n.pod_label_counts().map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d)).collect::<Vec<_>>();
                prop_assert_eq!(labels(&info), labels(&fresh));
                for (namespace, key, value, count) in labels(&info) {
                    prop_assert!(count > 0);
                    prop_assert_eq!(info.count_pods_with_label(&namespace, &key, &value), count);
                }
            }
        }
    }
}
