//! `orchestra up`: a whole cluster in one process — the embedded store in a data folder, the API
//! server on HTTPS, the controllers, the scheduler and one node agent with the process runtime —
//! and a kubeconfig to reach it.
//!
//! Restarting it on the same data folder keeps every object and the pods that run: the store is
//! durable, and the node agent takes on the containers its runtime still runs. Ctrl-C (or
//! SIGTERM) stops the control plane and the agent; the pods' processes keep running until the
//! next start takes them on again (as a kubelet restart leaves containers running).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::cluster::{
    AgentConfig, ControlPlane, ControlPlaneConfig, Shutdown, StoreChoice, host_name, join_all,
    open_runtime, open_store, progress, run_to_exit, start_agent, stop_signal, wait_node_ready,
};

/// Arguments of `orchestra up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The folder the cluster keeps its state in (store, certificates, tokens, kubeconfig,
    /// containers).
    #[arg(long, value_name = "FOLDER", default_value = ".orchestra")]
    data_dir: PathBuf,
    /// The address the API server listens on.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The node's name (the host's name by default).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The loopback addresses pods get.
    #[arg(long, value_name = "CIDR", default_value = "127.100.0.0/16")]
    pod_range: String,
}

/// Runs `orchestra up`.
pub(crate) fn run(args: &UpArgs) -> ExitCode {
    run_to_exit(up(args))
}

async fn up(args: &UpArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let fresh = !data_dir.join("store").exists();
    progress(format!(
        "{} data folder {}",
        if fresh { "new" } else { "existing" },
        data_dir.display()
    ));
    let client = open_store(&StoreChoice::Embedded(data_dir.join("store"))).await?;
    progress("store open");
    let (stop, shutdown) = Shutdown::new();
    let node_runtime = open_runtime(&data_dir).await?;
    let plane = ControlPlane::start(
        client.clone(),
        ControlPlaneConfig {
            data_dir: data_dir.clone(),
            listen: args.listen,
            logs: Some(node_runtime.clone()),
        },
        &shutdown,
    )
    .await?;
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    // The node agent, too, calls the API server as its node.
    let agent_client = plane.node_client(&node_name)?;
    let agent = start_agent(
        agent_client,
        &AgentConfig {
            node_name: node_name.clone(),
            data_dir: data_dir.clone(),
            pod_range: args.pod_range.clone(),
            address: args.listen.ip(),
            log_port: None,
            api_server: Some(plane.server_url.clone()),
            ca_pem: Some(plane.ca_pem.clone()),
        },
        node_runtime,
        &shutdown,
    )?;
    progress(format!(
        "node agent started: node {node_name}, process runtime, pods on {}",
        args.pod_range
    ));
    tokio::select! {
        ready = wait_node_ready(&client, &node_name) => ready?,
        () = stop_signal() => {
            progress("stopping");
            let _ = stop.send(true);
            join_all(vec![("node agent", agent)]).await?;
            return plane.join().await;
        }
    }
    progress(format!(
        "ready: node {node_name} is Ready; API at {}",
        plane.server_url
    ));
    println!("export KUBECONFIG={}", plane.kubeconfig.display());
    stop_signal().await;
    progress("stopping");
    let _ = stop.send(true);
    let agent_stopped = join_all(vec![("node agent", agent)]).await;
    let plane_stopped = plane.join().await;
    progress("stopped");
    agent_stopped.and(plane_stopped)
}
