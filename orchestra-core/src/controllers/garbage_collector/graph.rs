//! The ownership graph: every object the informers have seen, and who owns whom.
//!
//! Kubernetes' `GraphBuilder` keeps a node per uid, with the node's owners and its dependents,
//! and adds "virtual" nodes for owners it has not seen. Here the owner → dependents index is kept
//! apart from the nodes, built from the dependents' own `ownerReferences` only: it holds the
//! dependents of an owner whether or not the owner has been seen (or still exists), so no virtual
//! node is needed. An owner reference that does not resolve to an object the graph has seen, with
//! the same kind, name and namespace, sends its dependent to the collector, which checks the owner
//! against the API (what Kubernetes does by verifying the virtual node).
//!
//! The graph does no I/O: each change returns the [`Work`] it causes, for the caller to queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::resource::{ApiResource, DynamicObject};
use crate::runtime::watcher::WatcherEvent;

/// The finalizer of a foreground deletion: the object goes once its blocking dependents are gone.
pub(super) const FOREGROUND_DELETION: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion: the object goes once no dependent refers to it.
pub(super) const ORPHAN: &str = "orphan";

/// How many owners known to be absent are remembered (Kubernetes' default too).
const ABSENT_OWNERS: usize = 500;

/// An object as the graph knows it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Node {
    /// The object's kind: an index into the graph's resources.
    pub(super) resource: usize,
    /// The namespace, for namespaced kinds.
    pub(super) namespace: Option<String>,
    /// The name.
    pub(super) name: String,
    /// The object's owner references.
    pub(super) owners: Vec<OwnerReference>,
    /// The object has a `deletionTimestamp`.
    pub(super) being_deleted: bool,
    /// The object is being deleted in the foreground (`foregroundDeletion` finalizer).
    pub(super) deleting_dependents: bool,
    /// The object is being deleted, orphaning its dependents (`orphan` finalizer).
    pub(super) orphaning: bool,
}

impl Node {
    fn of(resource: usize, object: &DynamicObject) -> Node {
        let meta = &object.metadata;
        let being_deleted = meta.deletion_timestamp.is_some();
        let has = |finalizer: &str| meta.finalizers.iter().flatten().any(|f| f == finalizer);
        Node {
            resource,
            namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            being_deleted,
            deleting_dependents: being_deleted && has(FOREGROUND_DELETION),
            orphaning: being_deleted && has(ORPHAN),
        }
    }

    /// Whether this object's reference to `owner` blocks the owner's foreground deletion.
    pub(super) fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }
}

/// What a change to the graph asks of the collector's workers.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Work {
    /// Objects to look at: are their owners gone, or are they waiting for their dependents?
    pub(super) attempt_to_delete: Vec<String>,
    /// Owners whose dependents are to be orphaned.
    pub(super) attempt_to_orphan: Vec<String>,
}

/// An owner known not to exist: its coordinates as a dependent refers to it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct AbsentOwner {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) uid: String,
}

/// A bounded set of owners known not to exist (Kubernetes' `absentOwnerCache`), so that the
/// dependents of one deleted owner do not each look it up. Uids are never reused, so an entry
/// never goes stale; the oldest entries are forgotten first.
#[derive(Debug)]
struct AbsentOwners {
    known: BTreeSet<AbsentOwner>,
    order: VecDeque<AbsentOwner>,
    capacity: usize,
}

impl AbsentOwners {
    fn new(capacity: usize) -> AbsentOwners {
        AbsentOwners {
            known: BTreeSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn insert(&mut self, owner: AbsentOwner) {
        if self.capacity == 0 || self.known.contains(&owner) {
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
        self.known.insert(owner.clone());
        self.order.push_back(owner);
    }

    fn contains(&self, owner: &AbsentOwner) -> bool {
        self.known.contains(owner)
    }
}

/// The graph: see the [module documentation](self).
#[derive(Debug)]
pub(super) struct Graph {
    resources: Vec<ApiResource>,
    /// Every object seen, by uid.
    nodes: BTreeMap<String, Node>,
    /// Owner uid → the uids of the seen objects that refer to it.
    dependents: BTreeMap<String, BTreeSet<String>>,
    /// The objects of a (re-)list in progress, by kind.
    relisting: BTreeMap<usize, BTreeMap<String, Node>>,
    /// Which kinds have completed their first list.
    listed: Vec<bool>,
    absent: AbsentOwners,
}

impl Graph {
    /// An empty graph of objects of `resources`.
    pub(super) fn new(resources: Vec<ApiResource>) -> Graph {
        let listed = vec![false; resources.len()];
        Graph {
            resources,
            nodes: BTreeMap::new(),
            dependents: BTreeMap::new(),
            relisting: BTreeMap::new(),
            listed,
            absent: AbsentOwners::new(ABSENT_OWNERS),
        }
    }

    /// The kinds the graph holds.
    pub(super) fn resources(&self) -> &[ApiResource] {
        &self.resources
    }

    /// Whether every kind has completed its first list.
    pub(super) fn synced(&self) -> bool {
        self.listed.iter().all(|listed| *listed)
    }

    /// The object with this uid.
    pub(super) fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The seen objects that refer to `owner`, with their uids.
    pub(super) fn dependents(&self, owner: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid).map(|node| (uid.clone(), node.clone())))
            .collect()
    }

    /// Whether any seen object refers to `owner`.
    pub(super) fn has_dependents(&self, owner: &str) -> bool {
        self.dependents
            .get(owner)
            .is_some_and(|set| !set.is_empty())
    }

    /// Whether an owner is known not to exist.
    pub(super) fn is_absent(&self, owner: &AbsentOwner) -> bool {
        self.absent.contains(owner)
    }

    /// Remembers that an owner does not exist.
    pub(super) fn mark_absent(&mut self, owner: AbsentOwner) {
        self.absent.insert(owner);
    }

    /// Applies one event of the watcher of `resource` (an index into the graph's resources).
    pub(super) fn apply(&mut self, resource: usize, event: WatcherEvent<DynamicObject>) -> Work {
        let mut work = Work::default();
        match event {
            WatcherEvent::Init => {
                self.relisting.insert(resource, BTreeMap::new());
            }
            WatcherEvent::InitApply(object) => {
                if let Some(uid) = uid_of(&object) {
                    self.relisting
                        .entry(resource)
                        .or_default()
                        .insert(uid, Node::of(resource, &object));
                }
            }
            WatcherEvent::InitDone => {
                let listed = self.relisting.remove(&resource).unwrap_or_default();
                let gone: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(uid, node)| node.resource == resource && !listed.contains_key(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    self.remove(&uid, &mut work);
                }
                for (uid, node) in listed {
                    self.upsert(uid, node, &mut work);
                }
                if let Some(listed) = self.listed.get_mut(resource) {
                    *listed = true;
                }
            }
            WatcherEvent::Apply(object) => {
                if let Some(uid) = uid_of(&object) {
                    self.upsert(uid, Node::of(resource, &object), &mut work);
                }
            }
            WatcherEvent::Delete(object) => {
                if let Some(uid) = uid_of(&object) {
                    self.remove(&uid, &mut work);
                }
            }
        }
        work
    }

    /// Whether `reference`, made by `dependent`, names an object the graph has seen, with the
    /// same kind, name and (for a namespaced owner) namespace.
    fn resolves(&self, reference: &OwnerReference, dependent: &Node) -> bool {
        let Some(owner) = self.nodes.get(&reference.uid) else {
            return false;
        };
        let Some(resource) = self.resources.get(owner.resource) else {
            return false;
        };
        resource.api_version == reference.api_version
            && resource.kind == reference.kind
            && owner.name == reference.name
            && (!resource.namespaced || owner.namespace == dependent.namespace)
    }

    fn link(&mut self, dependent: &str, owners: &[OwnerReference]) {
        for owner in owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(dependent.to_owned());
        }
    }

    fn unlink(&mut self, dependent: &str, owners: &[OwnerReference]) {
        for owner in owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(dependent);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
    }

    /// Queues the owners, among `owners`, that wait for their dependents to go.
    fn wake_waiting_owners(&self, owners: &[OwnerReference], work: &mut Work) {
        for owner in owners {
            if self
                .nodes
                .get(&owner.uid)
                .is_some_and(|node| node.deleting_dependents)
            {
                work.attempt_to_delete.push(owner.uid.clone());
            }
        }
    }

    /// An object appeared or changed (Kubernetes' `processGraphChanges` for add and update
    /// events, with `processTransitions`).
    fn upsert(&mut self, uid: String, node: Node, work: &mut Work) {
        let old = self.nodes.insert(uid.clone(), node.clone());
        let (added, removed, changed) = match &old {
            None => (node.owners.clone(), Vec::new(), Vec::new()),
            Some(old) => owner_changes(&old.owners, &node.owners),
        };
        self.unlink(&uid, &removed);
        self.link(&uid, &added);
        // A dependent that no longer blocks its owner may be what the owner waited for.
        self.wake_waiting_owners(&removed, work);
        self.wake_waiting_owners(&changed, work);
        // An owner not seen (yet) is checked against the API: the dependent goes if it is gone.
        // So does a dependent seen after its owner started deleting in the foreground (the
        // watchers of different kinds list in any order).
        let unresolved = added
            .iter()
            .chain(&changed)
            .any(|reference| !self.resolves(reference, &node));
        let owner_deleting = added.iter().any(|reference| {
            self.nodes
                .get(&reference.uid)
                .is_some_and(|owner| owner.deleting_dependents)
        });
        if unresolved || owner_deleting {
            work.attempt_to_delete.push(uid.clone());
        }
        // An owner orphaning its dependents looks again, to orphan this one too.
        for reference in &added {
            if self
                .nodes
                .get(&reference.uid)
                .is_some_and(|owner| owner.orphaning)
            {
                work.attempt_to_orphan.push(reference.uid.clone());
            }
        }
        if old.is_none() {
            // Objects that named this uid before it was seen, with other coordinates: their
            // reference is dangling (or invalid), and they are looked at again.
            for (dependent_uid, dependent) in self.dependents(&uid) {
                let mismatched = dependent
                    .owners
                    .iter()
                    .filter(|reference| reference.uid == uid)
                    .any(|reference| !self.resolves(reference, &dependent));
                if mismatched {
                    work.attempt_to_delete.push(dependent_uid);
                }
            }
        }
        let was_orphaning = old.as_ref().is_some_and(|old| old.orphaning);
        let was_deleting_dependents = old.as_ref().is_some_and(|old| old.deleting_dependents);
        if node.orphaning && !was_orphaning {
            work.attempt_to_orphan.push(uid.clone());
        }
        if node.deleting_dependents && !was_deleting_dependents {
            work.attempt_to_delete
                .extend(self.dependents.get(&uid).into_iter().flatten().cloned());
            work.attempt_to_delete.push(uid);
        }
    }

    /// An object is gone: its dependents are looked at, and so are its owners that wait for it.
    fn remove(&mut self, uid: &str, work: &mut Work) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        self.unlink(uid, &node.owners);
        if let Some(dependents) = self.dependents.get(uid).filter(|set| !set.is_empty()) {
            work.attempt_to_delete.extend(dependents.iter().cloned());
            if let Some(resource) = self.resources.get(node.resource) {
                self.absent.insert(AbsentOwner {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                    namespace: node.namespace.clone(),
                    name: node.name.clone(),
                    uid: uid.to_owned(),
                });
            }
        }
        self.wake_waiting_owners(&node.owners, work);
    }
}

fn uid_of(object: &DynamicObject) -> Option<String> {
    object.metadata.uid.clone().filter(|uid| !uid.is_empty())
}

/// The owner references added, removed and changed between two versions of an object, matched by
/// uid (Kubernetes' `referencesDiffs`).
fn owner_changes(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (
    Vec<OwnerReference>,
    Vec<OwnerReference>,
    Vec<OwnerReference>,
) {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for reference in new {
        match old.iter().find(|r| r.uid == reference.uid) {
            None => added.push(reference.clone()),
            Some(before) if before != reference => changed.push(reference.clone()),
            Some(_) => {}
        }
    }
    let removed = old
        .iter()
        .filter(|r| !new.iter().any(|n| n.uid == r.uid))
        .cloned()
        .collect();
    (added, removed, changed)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn resources() -> Vec<ApiResource> {
        vec![
            ApiResource::new("", "v1", "ConfigMap", None, true),
            ApiResource::new("", "v1", "Node", None, false),
        ]
    }

    fn reference(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            ..OwnerReference::default()
        }
    }

    fn object(name: &str, uid: &str, owners: Vec<OwnerReference>) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                owner_references: (!owners.is_empty()).then_some(owners),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({}),
        }
    }

    fn terminating(mut object: DynamicObject, finalizer: &str) -> DynamicObject {
        object.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        object.metadata.finalizers = Some(vec![finalizer.into()]);
        object
    }

    fn synced(objects: Vec<DynamicObject>) -> Graph {
        let mut graph = Graph::new(resources());
        graph.apply(0, WatcherEvent::Init);
        for object in objects {
            graph.apply(0, WatcherEvent::InitApply(object));
        }
        graph.apply(0, WatcherEvent::InitDone);
        graph.apply(1, WatcherEvent::Init);
        graph.apply(1, WatcherEvent::InitDone);
        graph
    }

    #[test]
    fn synced_once_every_kind_has_listed() {
        let mut graph = Graph::new(resources());
        graph.apply(0, WatcherEvent::Init);
        graph.apply(0, WatcherEvent::InitDone);
        assert!(!graph.synced());
        graph.apply(1, WatcherEvent::Init);
        graph.apply(1, WatcherEvent::InitDone);
        assert!(graph.synced());
    }

    #[test]
    fn dependents_are_indexed_by_owner_uid_and_unresolved_owners_are_checked() {
        let owner = reference("ConfigMap", "owner", "u-owner", true);
        let mut graph = Graph::new(resources());
        graph.apply(0, WatcherEvent::Init);
        graph.apply(
            0,
            WatcherEvent::InitApply(object("dep", "u-dep", vec![owner.clone()])),
        );
        let work = graph.apply(0, WatcherEvent::InitDone);
        assert_eq!(
            work.attempt_to_delete,
            ["u-dep"],
            "the owner was never seen"
        );
        assert_eq!(graph.dependents("u-owner").len(), 1);

        let work = graph.apply(0, WatcherEvent::Apply(object("owner", "u-owner", vec![])));
        assert!(work.attempt_to_delete.is_empty());
        let work = graph.apply(
            0,
            WatcherEvent::Apply(object("dep", "u-dep", vec![owner.clone()])),
        );
        assert!(work.attempt_to_delete.is_empty(), "the owner resolves now");
    }

    #[test]
    fn a_deleted_owner_sends_its_dependents_to_the_collector() {
        let owner = reference("ConfigMap", "owner", "u-owner", false);
        let mut graph = synced(vec![
            object("owner", "u-owner", vec![]),
            object("dep", "u-dep", vec![owner]),
        ]);
        let work = graph.apply(0, WatcherEvent::Delete(object("owner", "u-owner", vec![])));
        assert_eq!(work.attempt_to_delete, ["u-dep"]);
        assert!(graph.is_absent(&AbsentOwner {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "owner".into(),
            uid: "u-owner".into(),
        }));
    }

    #[test]
    fn a_relist_removes_what_is_gone() {
        let owner = reference("ConfigMap", "owner", "u-owner", false);
        let mut graph = synced(vec![
            object("owner", "u-owner", vec![]),
            object("dep", "u-dep", vec![owner]),
        ]);
        graph.apply(0, WatcherEvent::Init);
        graph.apply(
            0,
            WatcherEvent::InitApply(object("dep", "u-dep", graph.nodes["u-dep"].owners.clone())),
        );
        let work = graph.apply(0, WatcherEvent::InitDone);
        assert!(graph.node("u-owner").is_none());
        assert!(work.attempt_to_delete.contains(&"u-dep".to_owned()));
    }

    #[test]
    fn foreground_deletion_queues_the_dependents_and_the_owner() {
        let blocking = reference("ConfigMap", "owner", "u-owner", true);
        let mut graph = synced(vec![
            object("owner", "u-owner", vec![]),
            object("dep", "u-dep", vec![blocking.clone()]),
        ]);
        let work = graph.apply(
            0,
            WatcherEvent::Apply(terminating(
                object("owner", "u-owner", vec![]),
                FOREGROUND_DELETION,
            )),
        );
        assert_eq!(work.attempt_to_delete, ["u-dep", "u-owner"]);
        assert!(graph.node("u-dep").is_some_and(|dep| dep.blocks("u-owner")));
        // The blocking dependent goes: the owner is looked at again.
        let work = graph.apply(
            0,
            WatcherEvent::Delete(object("dep", "u-dep", vec![blocking])),
        );
        assert_eq!(work.attempt_to_delete, ["u-owner"]);
        // Unchanged again: nothing more to do.
        let work = graph.apply(
            0,
            WatcherEvent::Apply(terminating(
                object("owner", "u-owner", vec![]),
                FOREGROUND_DELETION,
            )),
        );
        assert_eq!(work, Work::default());
    }

    #[test]
    fn dependents_seen_after_their_owner_started_deleting_are_queued() {
        let mut graph = Graph::new(resources());
        // The owners' kind lists first, the dependents' later.
        graph.apply(1, WatcherEvent::Init);
        graph.apply(
            1,
            WatcherEvent::InitApply(terminating(
                object("foreground", "u-fg", vec![]),
                FOREGROUND_DELETION,
            )),
        );
        graph.apply(
            1,
            WatcherEvent::InitApply(terminating(object("orphaning", "u-or", vec![]), ORPHAN)),
        );
        let work = graph.apply(1, WatcherEvent::InitDone);
        assert_eq!(work.attempt_to_orphan, ["u-or"]);
        graph.apply(0, WatcherEvent::Init);
        graph.apply(
            0,
            WatcherEvent::InitApply(object(
                "dep",
                "u-dep",
                vec![
                    reference("Node", "foreground", "u-fg", false),
                    reference("Node", "orphaning", "u-or", false),
                ],
            )),
        );
        let work = graph.apply(0, WatcherEvent::InitDone);
        assert_eq!(work.attempt_to_delete, ["u-dep"]);
        assert_eq!(work.attempt_to_orphan, ["u-or"]);
    }

    #[test]
    fn orphaning_queues_the_owner_once() {
        let mut graph = synced(vec![object("owner", "u-owner", vec![])]);
        let orphaning = terminating(object("owner", "u-owner", vec![]), ORPHAN);
        let work = graph.apply(0, WatcherEvent::Apply(orphaning.clone()));
        assert_eq!(work.attempt_to_orphan, ["u-owner"]);
        let work = graph.apply(0, WatcherEvent::Apply(orphaning));
        assert!(work.attempt_to_orphan.is_empty());
    }

    #[test]
    fn a_dependent_that_stops_blocking_wakes_its_waiting_owner() {
        let blocking = reference("ConfigMap", "owner", "u-owner", true);
        let mut graph = synced(vec![
            terminating(object("owner", "u-owner", vec![]), FOREGROUND_DELETION),
            object("dep", "u-dep", vec![blocking.clone()]),
        ]);
        let unblocked = reference("ConfigMap", "owner", "u-owner", false);
        let work = graph.apply(
            0,
            WatcherEvent::Apply(object("dep", "u-dep", vec![unblocked])),
        );
        assert_eq!(work.attempt_to_delete, ["u-owner"]);
        let work = graph.apply(0, WatcherEvent::Apply(object("dep", "u-dep", vec![])));
        assert_eq!(work.attempt_to_delete, ["u-owner"]);
        assert!(!graph.has_dependents("u-owner"));
    }

    #[test]
    fn references_with_other_coordinates_do_not_resolve() {
        // The uid is a ConfigMap's, but the reference says Node.
        let wrong_kind = reference("Node", "owner", "u-owner", false);
        let mut graph = synced(vec![object("owner", "u-owner", vec![])]);
        let work = graph.apply(
            0,
            WatcherEvent::Apply(object("dep", "u-dep", vec![wrong_kind])),
        );
        assert_eq!(work.attempt_to_delete, ["u-dep"]);
        // A dependent seen before its owner, with the wrong name, is looked at again when the
        // owner appears.
        let wrong_name = reference("ConfigMap", "other", "u-later", false);
        graph.apply(
            0,
            WatcherEvent::Apply(object("dep2", "u-dep2", vec![wrong_name])),
        );
        let work = graph.apply(0, WatcherEvent::Apply(object("later", "u-later", vec![])));
        assert_eq!(work.attempt_to_delete, ["u-dep2"]);
    }

    #[test]
    fn the_absent_owner_cache_is_bounded() {
        let mut cache = AbsentOwners::new(2);
        let owner = |uid: &str| AbsentOwner {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: None,
            name: "a".into(),
            uid: uid.into(),
        };
        cache.insert(owner("1"));
        cache.insert(owner("2"));
        cache.insert(owner("2"));
        cache.insert(owner("3"));
        assert!(!cache.contains(&owner("1")));
        assert!(cache.contains(&owner("2")) && cache.contains(&owner("3")));
    }
}
