//! Pod startup latency on a real node agent with the process runtime:
//!
//! ```text
//! cargo run --release --example pod_startup [-- --pods 100 --runs 3 --parallel-syncs 32 \
//!     --no-cgroups --state-dir DIR]
//! ```
//!
//! An in-process control plane (MemoryStore, the scheduler) and one node agent running pods as
//! host processes ([`ProcessRuntime`]) with loopback addresses ([`LoopbackNetwork`]). Each run
//! creates `--pods` pods at once (each runs `/bin/sleep`), and measures, for every pod, the time
//! from its create call to the first watch event that shows it `Running` — Kubernetes' pod
//! startup SLI (images present, stateless pods; its SLO is p99 ≤ 5 s). The pods are deleted
//! between runs.
//!
//! Printed: `RESULT pod_startup_p50 <ms> ms` and `RESULT pod_startup_p99 <ms> ms` (the median over
//! the runs of each run's percentile), with each run's figures and where the time went (create
//! to scheduled, scheduled to running). Target: p99 ≤ 100 ms.
//!
//! The runtime's state goes to a tmpfs (`/dev/shm`) as containerd's goes to `/run`; on a disk
//! (`--state-dir /var/tmp`, ext4 here) creating and deleting its few files per container costs
//! more than spawning the processes, and more with every run as ext4 scans past recently
//! deleted inodes. As root, containers get cgroups (BestEffort: cpu shares); `--no-cgroups`
//! measures without.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use orchestra::core::api::{
    Api, Client, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams,
};
use orchestra::core::k8s::api::core::v1::Pod;
use orchestra::core::k8s::apimachinery::pkg::api::resource::Quantity;
use orchestra::core::node_agent::agent::{NodeAgent, NodeAgentConfig};
use orchestra::core::node_agent::heartbeat::NodeConfig;
use orchestra::core::scheduler::Scheduler;
use orchestra::core::store::MemoryStore;
use orchestra::net::loopback::LoopbackNetwork;
use orchestra::runtime::process::{ProcessRuntime, ProcessRuntimeOptions};
use tokio::sync::oneshot;

/// mimalloc, as the `orchestra` binary that runs agents uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line.
struct Options {
    pods: usize,
    runs: usize,
    parallel_syncs: Option<usize>,
    cgroups: bool,
    state_dir: Option<std::path::PathBuf>,
}

fn options() -> Result<Options> {
    let mut options = Options {
        pods: 100,
        runs: 3,
        parallel_syncs: None,
        cgroups: true,
        state_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<usize> {
            args.next()
                .with_context(|| format!("{arg} needs a value"))?
                .parse()
                .with_context(|| format!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--pods" => options.pods = value()?,
            "--runs" => options.runs = value()?,
            "--parallel-syncs" => options.parallel_syncs = Some(value()?),
            "--no-cgroups" => options.cgroups = false,
            "--state-dir" => {
                options.state_dir = Some(args.next().context("--state-dir needs a value")?.into())
            }
            _ => bail!(
                "unknown argument {arg:?} (known: --pods N, --runs N, --parallel-syncs N, --no-cgroups, --state-dir DIR)"
            ),
        }
    }
    if options.pods == 0 || options.runs == 0 {
        bail!("--pods and --runs must be at least 1");
    }
    Ok(options)
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": "host",
                "command": ["/bin/sleep", "3600"],
            }],
        },
    }))?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Times of one pod, from its create call.
#[derive(Default)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
}

/// One run: `pods` pods created at once; each pod's (create→scheduled, create→running).
async fn run(client: &Client, run: usize, pods: usize) -> Result<Vec<(Duration, Duration)>> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let version = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = api.watch(&WatchParams::default(), &version).await?.boxed();
    let names: Vec<String> = (0..pods).map(|i| format!("startup-{run}-{i}")).collect();
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::<String, Seen>::new()));

    let watching = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut running = 0;
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let pod = match event {
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                    WatchEvent::Error(status) => bail!("the watch failed: {status:?}"),
                    WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => continue,
                };
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let entry = seen
                    .entry(pod.metadata.name.clone().unwrap_or_default())
                    .or_default();
                if entry.scheduled.is_none()
                    && pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some()
                {
                    entry.scheduled = Some(now);
                }
                if entry.running.is_none()
                    && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                {
                    entry.running = Some(now);
                    running += 1;
                    if running == pods {
                        return Ok::<(), anyhow::Error>(());
                    }
                }
            }
            bail!("the watch ended")
        })
    };

    let creates = names.iter().map(|name| {
        let api = api.clone();
        let seen = Arc::clone(&seen);
        async move {
            let pod = pod(name)?;
            let started = Instant::now();
            api.create(&PostParams::default(), &pod).await?;
            if let Ok(mut seen) = seen.lock() {
                seen.entry(name.clone()).or_default().created = Some(started);
            }
            Ok::<(), anyhow::Error>(())
        }
    });
    for result in futures_util::future::join_all(creates).await {
        result?;
    }
    tokio::time::timeout(Duration::from_secs(120), watching)
        .await
        .context("the pods did not all start within 2 minutes")???;

    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut times = Vec::with_capacity(pods);
    for name in &names {
        let entry = seen.get(name).context("a pod was never seen")?;
        let created = entry.created.context("a pod was never created")?;
        let running = entry.running.context("a pod never ran")?;
        let scheduled = entry.scheduled.unwrap_or(running);
        times.push((
            scheduled.saturating_duration_since(created),
            running.saturating_duration_since(created),
        ));
    }
    Ok(times)
}

/// Deletes the run's pods and waits until they are gone.
async fn clean_up(client: &Client) -> Result<()> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await?;
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        api.delete(&name, &DeleteParams::default()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !api.list(&ListParams::default()).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("the pods were not removed within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    // The runtime's state (records, FIFOs, exit codes) lives where containerd keeps its own, on
    // a tmpfs (it means nothing after a reboot), unless told otherwise.
    let parent = options.state_dir.clone().unwrap_or_else(|| {
        let shm = std::path::PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let dir = tempfile::tempdir_in(&parent)?;
    println!("runtime state in {}", dir.path().display());
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await?;

    let (stop_scheduler, scheduler_stopped) = oneshot::channel::<()>();
    let scheduler = tokio::spawn(Scheduler::new(client.clone()).run(async {
        let _ = scheduler_stopped.await;
    }));
    let mut runtime_options = ProcessRuntimeOptions::default();
    if !options.cgroups {
        runtime_options = runtime_options.without_cgroups();
    }
    let runtime =
        ProcessRuntime::open_with_options(dir.path().join("runtime"), runtime_options).await?;
    let network = LoopbackNetwork::open(dir.path().join("network"), "127.95.0.0/16")?;
    let node = NodeConfig::new(
        "node-1",
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("64".to_owned())),
            ("memory".to_owned(), Quantity("256Gi".to_owned())),
            (
                "pods".to_owned(),
                Quantity(options.pods.max(110).to_string()),
            ),
        ]),
    );
    let mut agent_config = NodeAgentConfig::new(node);
    if let Some(parallel) = options.parallel_syncs {
        agent_config.parallel_syncs = parallel;
    }
    let agent = NodeAgent::new(client.clone(), agent_config, Arc::new(runtime))
        .with_network(Arc::new(network));
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(agent.run(async {
        let _ = agent_stopped.await;
    }));
    // The node registered and seen by the scheduler before the clock starts.
    let nodes = Api::<orchestra::core::k8s::api::core::v1::Node>::all(client.clone());
    while nodes.get_opt("node-1").await?.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for index in 0..options.runs {
        let times = run(&client, index, options.pods).await?;
        let mut to_running: Vec<Duration> = times.iter().map(|t| t.1).collect();
        let mut to_scheduled: Vec<Duration> = times.iter().map(|t| t.0).collect();
        let mut after_scheduled: Vec<Duration> =
            times.iter().map(|t| t.1.saturating_sub(t.0)).collect();
        to_running.sort();
        to_scheduled.sort();
        after_scheduled.sort();
        let (p50, p99) = (percentile(&to_running, 50.0), percentile(&to_running, 99.0));
        println!(
            "run {}: {} pods, create→running p50 {:.1} ms p99 {:.1} ms max {:.1} ms; create→scheduled p99 {:.1} ms; scheduled→running p99 {:.1} ms",
            index + 1,
            options.pods,
            ms(p50),
            ms(p99),
            ms(to_running[to_running.len() - 1]),
            ms(percentile(&to_scheduled, 99.0)),
            ms(percentile(&after_scheduled, 99.0)),
        );
        p50s.push(p50);
        p99s.push(p99);
        clean_up(&client).await?;
    }
    p50s.sort();
    p99s.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "RESULT pod_startup_p50 {:.1} ms ({} pods at once, median of {} runs)",
        ms(median(&p50s)),
        options.pods,
        options.runs
    );
    println!(
        "RESULT pod_startup_p99 {:.1} ms ({} pods at once, median of {} runs; target 100 ms, Kubernetes' SLO 5 s)",
        ms(median(&p99s)),
        options.pods,
        options.runs
    );

    let _ = stop_agent.send(());
    agent.await??;
    let _ = stop_scheduler.send(());
    scheduler.await??;
    Ok(())
}
