//! Scheduling throughput at scale, through the real Api over a MemoryStore, as Kubernetes'
//! `scheduler_perf` measures kube-scheduler:
//!
//! ```text
//! cargo run --release --example scheduler_perf -- --nodes 5000 --pods 150000 --workload basic
//! ```
//!
//! The workloads mirror `scheduler_perf`'s (`config/performance-config.yaml`, node and pod
//! templates `node-default.yaml`: 4 cpu, 32Gi, 110 pods; `pod-default.yaml`: 100m cpu, 500Mi):
//!
//! - `basic` (`SchedulingBasic`): plain pods;
//! - `node-affinity` (`SchedulingNodeAffinity`): every node labelled
//!   `topology.kubernetes.io/zone=zone1`, pods requiring the zone to be `zone1` or `zone2`;
//! - `pod-anti-affinity` (`SchedulingPodAntiAffinity`): pods requiring, on
//!   `kubernetes.io/hostname`, no other pod of their group on the node; upstream runs one group
//!   of 1,000 + 1,000 pods, which cannot exceed one pod per node, so here the pods come in groups
//!   of `--group-size` (default: a fifth of the nodes) and every group spreads over distinct
//!   nodes;
//! - `pod-affinity` (`SchedulingPodAffinity`): every node in `zone1`, pods requiring a pod of
//!   their group in the same zone (the first one matching itself);
//! - `topology-spread` (`SchedulingPodTopologySpread`): nodes spread over three zones, pods with
//!   a `maxSkew: 1` zone constraint (`DoNotSchedule`) over their group.
//!
//! Nodes and pods are created first (and the store's history compacted, as the API server's
//! compactor does; again every 10 s during the run, keeping the last 10 s); then the scheduler
//! starts (default profile, events on) and
//! the clock runs until the last pod is bound. The figures: pods bound per second over that
//! time (informer sync included), the p99 of the scheduling attempt duration (from the pop to
//! the end of the binding, kube-scheduler's `scheduling_attempt_duration_seconds`), and the peak
//! resident memory of the whole process (store, Api and scheduler):
//!
//! ```text
//! RESULT scheduler_<workload> <pods/s> pods/s p99 <ms> ms
//! RESULT scheduler_<workload>_peak_memory <MiB> MiB
//! ```
//!
//! kube-scheduler's published CI floors at 5,000 nodes, for scale: basic 680–810 pods/s, node
//! affinity 220, pod anti-affinity 60, pod affinity 35 (they cannot be run side by side here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use orchestra::core::api::{Api, Client, ListParams, PostParams};
use orchestra::core::k8s::api::core::v1::{Node, Pod};
use orchestra::core::scheduler::{Scheduler, SchedulerConfig};
use orchestra::core::store::{MemoryStore, Store};
use serde_json::json;

/// The all-in-one binary's allocator (see `src/main.rs`), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The workloads, named as the issue names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Basic,
    NodeAffinity,
    PodAntiAffinity,
    PodAffinity,
    TopologySpread,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::NodeAffinity => "node_affinity",
            Workload::PodAntiAffinity => "pod_anti_affinity",
            Workload::PodAffinity => "pod_affinity",
            Workload::TopologySpread => "topology_spread",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Scheduling throughput at scale (Kubernetes' scheduler_perf workloads)")]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 150_000)]
    pods: usize,
    /// The workload.
    #[arg(long, value_enum, default_value_t = Workload::Basic)]
    workload: Workload,
    /// Pods per group for the affinity and spread workloads (default: a fifth of the nodes).
    #[arg(long)]
    group_size: Option<usize>,
    /// Threads running the filters (1: the scheduling loop's own).
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Do not record `Scheduled` events (they are on by default, as in kube-scheduler; writing
    /// them through the same in-process Api costs the scheduler about half its throughput here).
    #[arg(long)]
    no_events: bool,
}

fn node(name: &str, index: usize, workload: Workload) -> Result<Node> {
    let zone = match workload {
        Workload::TopologySpread => format!("zone{}", index % 3 + 1),
        _ => "zone1".to_owned(),
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": zone,
        }},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }))?)
}

fn pod(index: usize, workload: Workload, group_size: usize) -> Result<Pod> {
    let group = format!("g{}", index / group_size.max(1));
    let mut spec = json!({
        "containers": [{
            "name": "pause",
            "image": "registry.invalid/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
        }]
    });
    let term = |topology: &str| {
        json!({
            "labelSelector": {"matchLabels": {"group": group}},
            "topologyKey": topology,
        })
    };
    match workload {
        Workload::Basic => {}
        Workload::NodeAffinity => {
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"],
                }]}]
            }}});
        }
        Workload::PodAntiAffinity => {
            spec["affinity"] = json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname")],
            }});
        }
        Workload::PodAffinity => {
            spec["affinity"] = json!({"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term("topology.kubernetes.io/zone")],
            }});
        }
        Workload::TopologySpread => {
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"group": group}},
            }]);
        }
    }
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{index:06}"), "namespace": "default", "labels": {"group": group}},
        "spec": spec,
    }))?)
}

/// Creates `objects` through the Api with a few concurrent writers.
async fn create_all<K>(api: Api<K>, objects: Vec<K>) -> Result<()>
where
    K: orchestra::core::resource::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    const WRITERS: usize = 8;
    let objects = Arc::new(objects);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let api = api.clone();
        let objects = objects.clone();
        writers.push(tokio::spawn(async move {
            for object in objects.iter().skip(writer).step_by(WRITERS) {
                api.create(&PostParams::default(), object).await?;
            }
            Ok::<(), orchestra::core::status::StatusError>(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in MiB.
fn peak_memory_mib() -> Option<f64> {
    memory_mib("VmHWM:")
}

/// A figure of `/proc/self/status` in kiB (`VmHWM:`, `VmRSS:`, ...), in MiB.
fn memory_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn run(args: Args) -> Result<()> {
    let group_size = args.group_size.unwrap_or((args.nodes / 5).max(1));
    let store = MemoryStore::new();
    let client = Client::new(store.clone());
    client.bootstrap().await?;
    let setup = Instant::now();
    let nodes = (0..args.nodes)
        .map(|i| node(&format!("node-{i:05}"), i, args.workload))
        .collect::<Result<Vec<_>>>()?;
    create_all(Api::<Node>::all(client.clone()), nodes).await?;
    let pods = (0..args.pods)
        .map(|i| pod(i, args.workload, group_size))
        .collect::<Result<Vec<Pod>>>()?;
    create_all(Api::<Pod>::namespaced(client.clone(), "default"), pods).await?;
    eprintln!(
        "{} nodes and {} pods created in {:.1} s (peak memory so far {:.0} MiB); scheduling ({}) ...",
        args.nodes,
        args.pods,
        setup.elapsed().as_secs_f64(),
        peak_memory_mib().unwrap_or(0.0),
        args.workload.name()
    );

    // The API server compacts the store's history periodically (kube-apiserver: every 5
    // minutes, keeping the last interval's history); here once after the setup and then every
    // 10 seconds, the whole run being shorter than Kubernetes' interval.
    store.compact(store.current_revision().await?).await?;
    let compactor = {
        let store = store.clone();
        tokio::spawn(async move {
            // Compact to the revision of the previous tick: ten seconds of history stay, so a
            // watcher a little behind is not sent back to re-list (410 Gone), as with
            // kube-apiserver's compaction interval.
            let mut previous = None;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Some(revision) = previous {
                    let _ = store.compact(revision).await;
                }
                previous = store.current_revision().await.ok();
            }
        })
    };

    let mut config = SchedulerConfig::default();
    config.cycle.parallelism = args.parallelism;
    config.record_events = !args.no_events;
    let scheduler = Scheduler::with_config(client.clone(), config);
    let metrics = scheduler.metrics().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    let target = u64::try_from(args.pods)?;
    let deadline = Duration::from_secs(600);
    let mut last_report = Instant::now() - Duration::from_secs(4);
    while metrics.scheduled() < target {
        if started.elapsed() > deadline {
            bail!(
                "only {} of {} pods bound after {:?} ({} unschedulable attempts, {} errors)",
                metrics.scheduled(),
                target,
                deadline,
                metrics.unschedulable(),
                metrics.errors()
            );
        }
        if last_report.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "  {:.0} s: {} bound (resident {:.0} MiB)",
                started.elapsed().as_secs_f64(),
                metrics.scheduled(),
                memory_mib("VmRSS:").unwrap_or(0.0)
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    compactor.abort();
    let _ = stop.send(());
    task.await?.context("the scheduler failed")?;

    let listed = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?;
    let bound = listed
        .items
        .iter()
        .filter(|pod| {
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        })
        .count();
    if bound != args.pods {
        bail!("{bound} of {} pods bound", args.pods);
    }
    let throughput = args.pods as f64 / elapsed.as_secs_f64();
    let p99 = metrics
        .attempt_duration_quantile(0.99)
        .context("no attempt recorded")?;
    let algorithm_mean = metrics.algorithm_duration_mean().unwrap_or_default();
    let algorithm_p99 = metrics
        .algorithm_duration_quantile(0.99)
        .unwrap_or_default();
    println!(
        "RESULT scheduler_{}{} {:.0} pods/s p99 {:.2} ms nodes {} pods {} elapsed {:.2} s algorithm_mean {:.0} us algorithm_p99 {:.0} us unschedulable_attempts {} errors {}",
        args.workload.name(),
        if args.no_events { "_no_events" } else { "" },
        throughput,
        p99.as_secs_f64() * 1000.0,
        args.nodes,
        args.pods,
        elapsed.as_secs_f64(),
        algorithm_mean.as_secs_f64() * 1e6,
        algorithm_p99.as_secs_f64() * 1e6,
        metrics.unschedulable(),
        metrics.errors(),
    );
    if let Some(peak) = peak_memory_mib() {
        println!(
            "RESULT scheduler_{}_peak_memory {:.0} MiB",
            args.workload.name(),
            peak
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
