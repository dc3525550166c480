//! `orchestra agent`: a node agent alone, joining a control plane over its API.
//!
//! It reaches the API server with `--server` (and `--ca-file`, `--token`) or with a kubeconfig,
//! registers its node, and runs the pods bound to it with the process runtime. Its state (the
//! runtime's containers and logs, the network's address leases) lives in `--data-dir`;
//! restarting it takes on the pods still running.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Arc;

use orchestra_api::logs::{NodeAccess, RuntimeLogs, node_log_router};
use orchestra_api::remote::RemoteConfig;
use orchestra_api::tls::serve_plain;

use super::cluster::{
    AgentConfig, Shutdown, host_name, join_all, open_runtime, progress, run_to_exit, start_agent,
    stop_signal, wait_node_ready,
};

/// Arguments of `orchestra agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The API server's URL (`https://127.0.0.1:6443`).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The bearer token to authenticate with.
    #[arg(long, value_name = "TOKEN", env = "ORCHESTRA_TOKEN")]
    token: Option<String>,
    /// The CA certificate (PEM) of the server's certificate.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// A kubeconfig to take the server, CA and token from instead.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The runtime: `process` (containers as supervised host processes).
    #[arg(long, value_name = "KIND", default_value = "process")]
    runtime: String,
    /// The folder the agent keeps its state in.
    #[arg(long, value_name = "FOLDER", default_value = ".orchestra-agent")]
    data_dir: PathBuf,
    /// The node's name (the host's name by default).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The loopback addresses pods get.
    #[arg(long, value_name = "CIDR", default_value = "127.101.0.0/16")]
    pod_range: String,
    /// Where the agent serves its pods' logs to the control plane (kubelet's port 10250); the
    /// IP is the node's `InternalIP`. The endpoint takes no credentials: give an address only
    /// the control plane reaches.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:10250")]
    log_listen: std::net::SocketAddr,
}

/// Runs `orchestra agent`.
pub(crate) fn run(args: &AgentArgs) -> ExitCode {
    run_to_exit(agent(args))
}

fn remote_config(args: &AgentArgs) -> Result<RemoteConfig> {
    if let Some(path) = &args.kubeconfig {
        return RemoteConfig::from_kubeconfig(path)
            .with_context(|| format!("cannot use {}", path.display()));
    }
    let Some(server) = &args.server else {
        bail!("give --server (with --token and --ca-file) or --kubeconfig");
    };
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    Ok(RemoteConfig {
        server: server.clone(),
        ca_pem,
        token: args.token.clone(),
    })
}

async fn agent(args: &AgentArgs) -> Result<()> {
    if args.runtime != "process" {
        bail!(
            "unknown runtime {:?}: this agent has the process runtime",
            args.runtime
        );
    }
    let remote = remote_config(args)?;
    let client = remote.client().context("cannot set up the API client")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let (stop, shutdown) = Shutdown::new();
    let runtime = open_runtime(&data_dir).await?;
    let listener = tokio::net::TcpListener::bind(args.log_listen)
        .await
        .with_context(|| format!("cannot listen on {} for logs", args.log_listen))?;
    let log_port = listener.local_addr()?.port();
    // Callers of the log endpoint are checked with the API server (kubelet's webhook mode).
    let access = NodeAccess::new(
        remote.transport().context("cannot set up the API client")?,
        &node_name,
    );
    let router = node_log_router(
        client.clone(),
        Arc::new(RuntimeLogs::new(runtime.clone())),
        Some(access),
    );
    let logs_task = tokio::spawn({
        let stop = shutdown.wait();
        async move {
            serve_plain(listener, router, stop)
                .await
                .context("the log endpoint failed")
        }
    });
    let task = start_agent(
        client.clone(),
        &AgentConfig {
            node_name: node_name.clone(),
            data_dir,
            pod_range: args.pod_range.clone(),
            address: args.log_listen.ip(),
            log_port: Some(log_port),
            api_server: Some(remote.server.clone()),
            ca_pem: remote.ca_pem.clone(),
        },
        runtime,
        &shutdown,
    )?;
    progress(format!(
        "node agent started: node {node_name}, process runtime"
    ));
    tokio::select! {
        ready = wait_node_ready(&client, &node_name) => {
            ready?;
            progress(format!("ready: node {node_name} is Ready"));
            stop_signal().await;
        }
        () = stop_signal() => {}
    }
    progress("stopping");
    let _ = stop.send(true);
    join_all(vec![("node agent", task), ("log endpoint", logs_task)]).await
}
