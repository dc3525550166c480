//! The scheduling framework: extension points, their results, per-cycle state and profiles.
//!
//! This is kube-scheduler's framework (`pkg/scheduler/framework`) in Rust. A scheduling cycle
//! takes one pod through the extension points of a [`Profile`]:
//!
//! 1. **PreFilter** ([`PreFilterPlugin`]) once per pod: computes what the filters need (the pod's
//!    requests, its host ports, its parsed affinity) into the [`CycleState`], or rejects the pod
//!    outright, or returns [`Code::Skip`] to have its filter skipped for this pod, and may
//!    restrict the cycle to named nodes ([`CycleState::restrict_nodes`]);
//! 2. **Filter** ([`FilterPlugin`]) once per node: may the pod run there? The first plugin that
//!    says no decides, with its reasons;
//! 3. **PreScore** ([`PreScorePlugin`]) once per pod, over the nodes that passed;
//! 4. **Score** ([`ScorePlugin`]) once per feasible node, then **NormalizeScore** once over all
//!    of them, bringing each plugin's scores into `0..=`[`MAX_NODE_SCORE`]; the node's total is the
//!    weighted sum over the profile's score plugins.
//!
//! Plugins are traits that users implement, as with kube-scheduler, and a [`Profile`] lists them
//! with their score weights.
//!
//! # Examples
//!
//! A filter plugin of one's own: only nodes labelled `disk=ssd` for pods annotated
//! `example.com/ssd`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use orchestra_core::k8s::api::core::v1::{Node, Pod};
//! use orchestra_core::scheduler::framework::{
//!     Code, CycleState, FilterPlugin, Plugin, Profile, Status,
//! };
//! use orchestra_core::scheduler::node_info::NodeInfo;
//!
//! #[derive(Debug)]
//! struct SsdOnly;
//!
//! impl Plugin for SsdOnly {
//!     fn name(&self) -> &'static str {
//!         "SsdOnly"
//!     }
//! }
//!
//! impl FilterPlugin for SsdOnly {
//!     fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
//!         let wants_ssd = pod.metadata.annotations.as_ref()
//!             .is_some_and(|a| a.contains_key("example.com/ssd"));
//!         let has_ssd = node.node().metadata.labels.as_ref()
//!             .and_then(|l| l.get("disk"))
//!             .is_some_and(|disk| disk == "ssd");
//!         if !wants_ssd || has_ssd {
//!             Status::SUCCESS
//!         } else {
//!             Status::unschedulable(self.name(), "node(s) had no SSD")
//!         }
//!     }
//! }
//!
//! let profile = Profile::new("ssd-scheduler").with_filter(Arc::new(SsdOnly));
//! let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}}))?;
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "p", "annotations": {"example.com/ssd": ""}},
//!     "spec": {"containers": []}
//! }))?;
//! let mut state = CycleState::new();
//! assert!(profile.run_pre_filter(&mut state, &pod, &[]).is_success());
//! let status = profile.run_filter(&state, &pod, &NodeInfo::new(Arc::new(node)));
//! assert_eq!(status.code, Code::Unschedulable);
//! assert_eq!(status.plugin, "SsdOnly");
//! assert_eq!(status.reasons, ["node(s) had no SSD"]);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::node_info::NodeInfo;

/// The highest score a plugin gives a node after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;
/// The lowest score a plugin gives a node.
pub const MIN_NODE_SCORE: i64 = 0;

/// The outcome of running a plugin, as kube-scheduler's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The plugin ran and the pod may go on (or fits the node).
    Success,
    /// The pod does not fit, but might if some pods went away (preemption may help).
    Unschedulable,
    /// The pod does not fit and removing pods would not change that (preemption skips the node).
    UnschedulableAndUnresolvable,
    /// Something went wrong inside the plugin; the pod's cycle fails and it is retried.
    Error,
    /// From PreFilter or PreScore: this plugin has nothing to do for this pod, so its Filter or
    /// Score is skipped for the cycle.
    Skip,
}

/// What a plugin returns from an extension point: a [`Code`], the reasons (worded as Kubernetes
/// words them, since they end up in the `FailedScheduling` event) and the plugin that said so.
///
/// [`Status::SUCCESS`] allocates nothing, so filters return it freely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The outcome.
    pub code: Code,
    /// Why, for anything but success. Kubernetes' fixed wordings are borrowed `'static` strings,
    /// so that a filter rejecting thousands of nodes does not allocate a message for each.
    pub reasons: Vec<Cow<'static, str>>,
    /// The name of the plugin that returned it (empty for success).
    pub plugin: &'static str,
}

impl Status {
    /// Success.
    pub const SUCCESS: Status = Status {
        code: Code::Success,
        reasons: Vec::new(),
        plugin: "",
    };

    /// A status with one reason.
    pub fn new(code: Code, plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    /// [`Code::Unschedulable`] with one reason.
    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, plugin, reason)
    }

    /// [`Code::UnschedulableAndUnresolvable`] with one reason.
    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, plugin, reason)
    }

    /// [`Code::Error`] with one reason.
    pub fn error(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, plugin, reason)
    }

    /// [`Code::Skip`].
    pub const fn skip(plugin: &'static str) -> Status {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin,
        }
    }

    /// The reasons joined by `", "`: the status's message, as kube-scheduler's `Message()`.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    /// Whether the code is [`Code::Success`].
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the pod was rejected: [`Code::Unschedulable`] or
    /// [`Code::UnschedulableAndUnresolvable`].
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code)?;
        if !self.plugin.is_empty() {
            write!(f, " ({})", self.plugin)?;
        }
        for (i, reason) in self.reasons.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            f.write_str(reason)?;
        }
        Ok(())
    }
}

/// Data that plugins write for the rest of one pod's scheduling cycle (kube-scheduler's
/// `CycleState`): a PreFilter or PreScore computes something once and the Filter or Score calls
/// for every node read it.
///
/// Entries are keyed by a `&'static str` (by convention the extension point and plugin, such as
/// `"PreFilterNodeResourcesFit"`) and read back by type.
///
/// # Examples
///
/// ```
/// use orchestra_core::scheduler::framework::CycleState;
///
/// let mut state = CycleState::new();
/// state.write("PreFilterExample", 42_u32);
/// assert_eq!(state.read::<u32>("PreFilterExample"), Some(&42));
/// assert_eq!(state.read::<u64>("PreFilterExample"), None);
/// ```
#[derive(Default)]
pub struct CycleState {
    /// Few entries, read once per node per plugin: a vector scanned by key identity first is
    /// faster than a map comparing strings.
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
    node_names: Option<BTreeSet<String>>,
}

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleState")
            .field(
                "keys",
                &self.data.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            )
            .field("skip_filter", &self.skip_filter)
            .field("skip_score", &self.skip_score)
            .field("node_names", &self.node_names)
            .finish()
    }
}

impl CycleState {
    /// An empty state, for a new cycle.
    pub fn new() -> CycleState {
        CycleState::default()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| same_key(k, key)) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    /// The value under `key`, if there is one of type `T`.
    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        // Plugins read with the constant they wrote with: one pointer comparison per entry;
        // the same text from another constant is found by the second pass.
        self.data
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, key))
            .or_else(|| self.data.iter().find(|(k, _)| *k == key))
            .and_then(|(_, value)| value.downcast_ref::<T>())
    }

    /// The value under `key`, or an [`Code::Error`] status naming `plugin` (for a Filter or
    /// Score whose PreFilter or PreScore did not run).
    ///
    /// # Errors
    ///
    /// A [`Code::Error`] status when there is no value of type `T` under `key`.
    pub fn read_or_error<T: Any>(
        &self,
        key: &'static str,
        plugin: &'static str,
    ) -> Result<&T, Status> {
        self.read(key)
            .ok_or_else(|| Status::error(plugin, format!("reading {key:?} from cycle state")))
    }

    /// Removes every entry, for reuse by the next cycle.
    pub fn clear(&mut self) {
        self.data.clear();
        self.skip_filter.clear();
        self.skip_score.clear();
        self.node_names = None;
    }

    /// Restricts the cycle to the nodes named in `names` (kube-scheduler's `PreFilterResult`):
    /// a PreFilter that knows the pod can only run on some nodes (required affinity to node
    /// names) says so, and the scheduling loop filters only those. Several restrictions
    /// intersect; an empty set means no node can run the pod.
    pub fn restrict_nodes(&mut self, names: BTreeSet<String>) {
        self.node_names = Some(match self.node_names.take() {
            None => names,
            Some(previous) => previous.intersection(&names).cloned().collect(),
        });
    }

    /// The nodes the cycle is restricted to, or `None` for all (see
    /// [`CycleState::restrict_nodes`]).
    pub fn node_names(&self) -> Option<&BTreeSet<String>> {
        self.node_names.as_ref()
    }

    /// Whether the Filter of `plugin` is skipped this cycle (its PreFilter returned
    /// [`Code::Skip`]).
    pub fn skips_filter(&self, plugin: &str) -> bool {
        self.skip_filter
            .iter()
            .any(|skipped| same_key(skipped, plugin))
    }

    /// Whether the Score of `plugin` is skipped this cycle (its PreScore returned [`Code::Skip`]).
    pub fn skips_score(&self, plugin: &str) -> bool {
        self.skip_score
            .iter()
            .any(|skipped| same_key(skipped, plugin))
    }
}

/// Whether two state keys are the same: the same static string (the usual case, one pointer
/// comparison) or equal strings.
fn same_key(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// A scheduler plugin: anything with a name. The extension points are the traits that build on
/// it.
pub trait Plugin: Send + Sync + fmt::Debug {
    /// The plugin's name, as it appears in profiles and in [`Status::plugin`] (kube-scheduler's
    /// names for the built-in plugins, such as `"NodeResourcesFit"`).
    fn name(&self) -> &'static str;
}

/// The PreFilter extension point: runs once per pod before any Filter.
pub trait PreFilterPlugin: Plugin {
    /// Computes what this plugin's Filter needs into `state`. Returns [`Status::SUCCESS`] to go
    /// on, a rejection to make the pod unschedulable on every node, or [`Code::Skip`] when the
    /// plugin's Filter has nothing to check for this pod (it is then not called).
    ///
    /// `nodes` are all the nodes of the cycle's snapshot, for plugins whose filter depends on
    /// pods elsewhere in the cluster (inter-pod affinity, topology spread).
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Status;
}

/// The Filter extension point: may the pod run on this node?
///
/// Called for every candidate node, so it should not allocate when the node fits: return
/// [`Status::SUCCESS`] and read precomputed data from the [`CycleState`].
pub trait FilterPlugin: Plugin {
    /// [`Status::SUCCESS`] if the pod fits the node as far as this plugin is concerned, else a
    /// rejection with Kubernetes' wording of the reasons.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

/// The PreScore extension point: runs once per pod, over the nodes that passed the filters, before
/// any Score.
pub trait PreScorePlugin: Plugin {
    /// Computes what this plugin's Score needs into `state`, or returns [`Code::Skip`] when it
    /// has nothing to score for this pod (its Score is then not called).
    ///
    /// `feasible` are the nodes that passed the filters and will be scored; `all` are all the
    /// nodes of the cycle's snapshot.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[Arc<NodeInfo>],
    ) -> Status;
}

/// A node's score from one plugin, by the node's position in the list being scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeScore {
    /// The node's index in the slice of nodes given to the scoring.
    pub index: usize,
    /// The score.
    pub score: i64,
}

/// The Score extension point: how good is this node for the pod?
pub trait ScorePlugin: Plugin {
    /// The node's raw score; [`ScorePlugin::normalize`] brings all of them into
    /// `0..=`[`MAX_NODE_SCORE`].
    ///
    /// # Errors
    ///
    /// A status (usually [`Code::Error`]) when the node cannot be scored; the cycle fails.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status>;

    /// Scores every node of the cycle into `scores` (cleared first), `scores[i]` for
    /// `nodes[i]` with `index: i`. The default calls [`ScorePlugin::score`] for each node; a
    /// plugin overrides it to do its per-cycle work (reading its cycle state, say) once.
    ///
    /// # Errors
    ///
    /// The first node's error, as [`ScorePlugin::score`].
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), Status> {
        scores.clear();
        for (index, node) in nodes.iter().enumerate() {
            let score = self.score(state, pod, node)?;
            scores.push(NodeScore { index, score });
        }
        Ok(())
    }

    /// Rescales the raw scores of all nodes of the cycle into `0..=`[`MAX_NODE_SCORE`]. The
    /// default leaves them as they are, for scores already in range.
    fn normalize(&self, scores: &mut [NodeScore]) {
        let _ = scores;
    }
}

/// Fills `scores` (cleared first) with `score(node)` for each of `nodes`, in order: the body of a
/// [`ScorePlugin::score_nodes`] that has read its cycle state.
pub fn score_each(
    nodes: &[&NodeInfo],
    scores: &mut Vec<NodeScore>,
    score: impl Fn(&NodeInfo) -> i64,
) {
    scores.clear();
    scores.extend(nodes.iter().enumerate().map(|(index, node)| NodeScore {
        index,
        score: score(node),
    }));
}

/// Kubernetes' `DefaultNormalizeScore`: scales scores so that the highest becomes `max_score`
/// (and, with `reverse`, subtracts each from `max_score`, so the lowest raw score wins). When all
/// are zero they stay zero, or all become `max_score` with `reverse`.
///
/// # Examples
///
/// ```
/// use orchestra_core::scheduler::framework::{NodeScore, default_normalize_score};
///
/// let mut scores = [NodeScore { index: 0, score: 1 }, NodeScore { index: 1, score: 4 }];
/// default_normalize_score(100, true, &mut scores);
/// assert_eq!([scores[0].score, scores[1].score], [75, 0]);
/// ```
pub fn default_normalize_score(max_score: i64, reverse: bool, scores: &mut [NodeScore]) {
    let highest = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = max_score;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut score = max_score.saturating_mul(s.score) / highest;
        if reverse {
            score = max_score - score;
        }
        s.score = score;
    }
}

/// A score plugin of a profile with its weight.
#[derive(Clone, Debug)]
pub struct WeightedScorePlugin {
    /// The plugin.
    pub plugin: Arc<dyn ScorePlugin>,
    /// What its normalised score is multiplied by in the node's total.
    pub weight: i64,
}

/// A scheduler profile (kube-scheduler's `KubeSchedulerProfile`): a name, which pods choose with
/// `spec.schedulerName`, and the plugins of each extension point, in the order they run.
///
/// A plugin that implements several extension points is added to each, sharing one `Arc`. See
/// the [module documentation](self) for a custom plugin, and
/// [`plugins::default_profile`](super::plugins::default_profile) for kube-scheduler's defaults.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The scheduler name pods select it by.
    pub scheduler_name: String,
    /// The PreFilter plugins.
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    /// The Filter plugins.
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    /// The PreScore plugins.
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// The Score plugins with their weights.
    pub score: Vec<WeightedScorePlugin>,
    /// The PostFilter plugins (preemption), run when no node passes the filters.
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    /// The Reserve plugins, run in order once a node is chosen (and unreserved in reverse order
    /// if the pod does not get bound).
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    /// The Bind plugins, asked in order until one does not skip. The scheduler adds its
    /// default binder (the `pods/binding` subresource) after them.
    pub bind: Vec<Arc<dyn BindPlugin>>,
}

impl Profile {
    /// A profile with no plugins.
    pub fn new(scheduler_name: impl Into<String>) -> Profile {
        Profile {
            scheduler_name: scheduler_name.into(),
            pre_filter: Vec::new(),
            filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            post_filter: Vec::new(),
            reserve: Vec::new(),
            bind: Vec::new(),
        }
    }

    /// Adds a PreFilter plugin.
    pub fn with_pre_filter(mut self, plugin: Arc<dyn PreFilterPlugin>) -> Profile {
        self.pre_filter.push(plugin);
        self
    }

    /// Adds a Filter plugin.
    pub fn with_filter(mut self, plugin: Arc<dyn FilterPlugin>) -> Profile {
        self.filter.push(plugin);
        self
    }

    /// Adds a PreScore plugin.
    pub fn with_pre_score(mut self, plugin: Arc<dyn PreScorePlugin>) -> Profile {
        self.pre_score.push(plugin);
        self
    }

    /// Adds a Score plugin with its weight.
    pub fn with_score(mut self, plugin: Arc<dyn ScorePlugin>, weight: i64) -> Profile {
        self.score.push(WeightedScorePlugin { plugin, weight });
        self
    }

    /// Adds a PostFilter plugin.
    pub fn with_post_filter(mut self, plugin: Arc<dyn PostFilterPlugin>) -> Profile {
        self.post_filter.push(plugin);
        self
    }

    /// Adds a Reserve plugin.
    pub fn with_reserve(mut self, plugin: Arc<dyn ReservePlugin>) -> Profile {
        self.reserve.push(plugin);
        self
    }

    /// Adds a Bind plugin.
    pub fn with_bind(mut self, plugin: Arc<dyn BindPlugin>) -> Profile {
        self.bind.push(plugin);
        self
    }

    /// Runs the PreFilter plugins in order, over all the snapshot's `nodes`. Returns the first
    /// status that is neither success nor skip; a plugin that returns [`Code::Skip`] has its
    /// Filter skipped for the cycle.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Status {
        for plugin in &self.pre_filter {
            let status = plugin.pre_filter(state, pod, nodes);
            match status.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_filter.push(plugin.name());
                }
                _ => return with_plugin(status, plugin.name()),
            }
        }
        Status::SUCCESS
    }

    /// Runs the Filter plugins (but those skipped) on one node, stopping at the first that does
    /// not succeed.
    pub fn run_filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        self.filter_plan(state).run(state, pod, node)
    }

    /// The Filter plugins that run this cycle (those whose PreFilter did not skip them), for
    /// filtering many nodes without asking which are skipped at every node.
    pub fn filter_plan(&self, state: &CycleState) -> FilterPlan<'_> {
        FilterPlan {
            plugins: self
                .filter
                .iter()
                .filter(|plugin| state.skip_filter.is_empty() || !state.skips_filter(plugin.name()))
                .collect(),
        }
    }

    /// Runs the PreScore plugins in order over the `feasible` nodes (a plugin returning
    /// [`Code::Skip`] has its Score skipped). Returns the first status that is neither success
    /// nor skip.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[Arc<NodeInfo>],
    ) -> Status {
        for plugin in &self.pre_score {
            let status = plugin.pre_score(state, pod, feasible, all);
            match status.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_score.push(plugin.name());
                }
                _ => return with_plugin(status, plugin.name()),
            }
        }
        Status::SUCCESS
    }

    /// Scores the feasible `nodes`: each Score plugin (but those skipped) scores every node, its
    /// scores are normalised and weighted, and the totals are returned by node index.
    ///
    /// # Errors
    ///
    /// The first status a Score plugin fails with.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
    ) -> Result<Vec<NodeScore>, Status> {
        let mut totals: Vec<NodeScore> = (0..nodes.len())
            .map(|index| NodeScore { index, score: 0 })
            .collect();
        let mut scores = Vec::with_capacity(nodes.len());
        for weighted in &self.score {
            let plugin = &weighted.plugin;
            if state.skips_score(plugin.name()) {
                continue;
            }
            plugin
                .score_nodes(state, pod, nodes, &mut scores)
                .map_err(|status| with_plugin(status, plugin.name()))?;
            plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                total.score = total
                    .score
                    .saturating_add(score.score.saturating_mul(weighted.weight));
            }
        }
        Ok(totals)
    }

    /// Runs the Reserve plugins in order for `pod` on `node`. When one fails, the ones before it
    /// are unreserved in reverse order and its status is returned.
    pub fn run_reserve(&self, state: &mut CycleState, pod: &Pod, node: &str) -> Status {
        for (index, plugin) in self.reserve.iter().enumerate() {
            let status = plugin.reserve(state, pod, node);
            if !status.is_success() {
                for earlier in self.reserve[..index].iter().rev() {
                    earlier.unreserve(state, pod, node);
                }
                return with_plugin(status, plugin.name());
            }
        }
        Status::SUCCESS
    }

    /// Runs every Reserve plugin's Unreserve, in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &Pod, node: &str) {
        for plugin in self.reserve.iter().rev() {
            plugin.unreserve(state, pod, node);
        }
    }
}

/// The Filter plugins of a profile that run in one cycle ([`Profile::filter_plan`]).
#[derive(Debug)]
pub struct FilterPlan<'p> {
    plugins: Vec<&'p Arc<dyn FilterPlugin>>,
}

impl FilterPlan<'_> {
    /// Runs the plugins in order on one node; the first rejection stops and is returned (with
    /// its plugin's name set).
    pub fn run(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        for plugin in &self.plugins {
            let status = plugin.filter(state, pod, node);
            if !status.is_success() {
                return with_plugin(status, plugin.name());
            }
        }
        Status::SUCCESS
    }
}

/// What a PostFilter plugin did for a pod that fits no node.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    /// The node the pod is nominated to (its `status.nominatedNodeName`) once the victims are
    /// gone.
    pub nominated_node: String,
    /// The pods to delete (gracefully) to make room for it.
    pub victims: Vec<Arc<Pod>>,
}

/// What a PostFilter plugin is given: the profile (to re-run its filters on what-if nodes), all
/// the nodes of the snapshot, and why each node was rejected.
#[derive(Debug)]
pub struct PostFilterContext<'a> {
    /// The profile being run.
    pub profile: &'a Profile,
    /// All the nodes of the cycle's snapshot.
    pub nodes: &'a [Arc<NodeInfo>],
    /// The status each rejected node got from the filters, by node name.
    pub statuses: &'a BTreeMap<String, Status>,
}

/// The PostFilter extension point: runs when no node passed the filters, to make one pass
/// (kube-scheduler's DefaultPreemption).
pub trait PostFilterPlugin: Plugin {
    /// Finds a node the pod could run on after some change (victims evicted), or returns a
    /// rejection saying why there is none.
    ///
    /// # Errors
    ///
    /// An unschedulable status when nothing can be done, an error status when something broke.
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &Pod,
        context: &PostFilterContext<'_>,
    ) -> Result<PostFilterResult, Status>;
}

/// The Reserve extension point: told when the scheduler has chosen a node for a pod and counts
/// it there, before binding, so that plugins keeping their own accounts can update them.
pub trait ReservePlugin: Plugin {
    /// Reserves `node` for `pod`. A failure makes the cycle fail.
    fn reserve(&self, state: &mut CycleState, pod: &Pod, node: &str) -> Status;
    /// Undoes [`reserve`](ReservePlugin::reserve): the pod will not be bound to `node`. Must be
    /// idempotent and must not fail.
    fn unreserve(&self, state: &mut CycleState, pod: &Pod, node: &str);
}

/// A boxed future, for the asynchronous extension point [`BindPlugin`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The Bind extension point: records the pod's placement, normally through the API's
/// `pods/binding` subresource.
pub trait BindPlugin: Plugin {
    /// Binds `pod` to `node`. Returns [`Code::Skip`] to leave the pod to the next bind plugin,
    /// success when bound, and anything else when binding failed (the pod is then forgotten and
    /// retried).
    fn bind<'a>(&'a self, pod: &'a Pod, node: &'a str) -> BoxFuture<'a, Status>;
}

fn with_plugin(mut status: Status, plugin: &'static str) -> Status {
    if status.plugin.is_empty() {
        status.plugin = plugin;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_default_and_reverse() {
        let mut scores: Vec<NodeScore> = [10, 20, 0]
            .iter()
            .enumerate()
            .map(|(index, &score)| NodeScore { index, score })
            .collect();
        default_normalize_score(MAX_NODE_SCORE, false, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [50, 100, 0]
        );
        let mut zeros = [NodeScore { index: 0, score: 0 }];
        default_normalize_score(MAX_NODE_SCORE, true, &mut zeros);
        assert_eq!(zeros[0].score, 100);
        let mut empty: [NodeScore; 0] = [];
        default_normalize_score(MAX_NODE_SCORE, true, &mut empty);
    }

    #[test]
    fn status_display_and_kinds() {
        let status = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        assert!(status.is_rejected());
        assert_eq!(
            status.to_string(),
            "Unschedulable (NodeResourcesFit): Insufficient cpu"
        );
        assert!(Status::SUCCESS.is_success());
        assert_eq!(Status::skip("X").code, Code::Skip);
        assert!(!Status::error("X", "boom").is_rejected());
    }

    #[test]
    fn cycle_state_typed() {
        let mut state = CycleState::new();
        state.write("k", String::from("v"));
        assert_eq!(state.read::<String>("k").map(String::as_str), Some("v"));
        assert!(state.read_or_error::<u8>("k", "P").is_err());
        assert!(format!("{state:?}").contains("\"k\""));
        state.restrict_nodes(BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        state.restrict_nodes(BTreeSet::from(["b".to_owned(), "c".to_owned()]));
        assert_eq!(state.node_names(), Some(&BTreeSet::from(["b".to_owned()])));
        state.clear();
        assert!(state.read::<String>("k").is_none());
        assert!(state.node_names().is_none());
    }
}
