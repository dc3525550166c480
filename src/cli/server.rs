//! `orchestra server`: the control plane alone — store, API server on HTTPS, controllers and
//! scheduler — for clusters whose nodes run `orchestra agent` elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::cluster::{
    ControlPlane, ControlPlaneConfig, Shutdown, StoreChoice, open_store, progress, run_to_exit,
    stop_signal,
};

/// Arguments of `orchestra server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The folder the control plane keeps its state in (the embedded store, certificates,
    /// tokens, kubeconfig).
    #[arg(long, value_name = "FOLDER", default_value = ".orchestra")]
    data_dir: PathBuf,
    /// The address the API server listens on.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The store: `embedded` (in the data folder) or `etcd` (with `--etcd-endpoints`).
    #[arg(long, value_name = "KIND", default_value = "embedded")]
    store: String,
    /// etcd's client URLs, comma-separated (with `--store etcd`).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
}

/// Runs `orchestra server`.
pub(crate) fn run(args: &ServerArgs) -> ExitCode {
    run_to_exit(server(args))
}

async fn server(args: &ServerArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let choice = match args.store.as_str() {
        "embedded" => StoreChoice::Embedded(data_dir.join("store")),
        "etcd" if args.etcd_endpoints.is_empty() => {
            anyhow::bail!("--store etcd needs --etcd-endpoints")
        }
        "etcd" => StoreChoice::Etcd(args.etcd_endpoints.clone()),
        other => anyhow::bail!("unknown store {other:?}: use embedded or etcd"),
    };
    let client = open_store(&choice).await?;
    progress("store open");
    let (stop, shutdown) = Shutdown::new();
    let plane = ControlPlane::start(
        client,
        ControlPlaneConfig {
            data_dir,
            listen: args.listen,
            logs: None,
        },
        &shutdown,
    )
    .await?;
    progress(format!(
        "ready: API at {}; nodes join with: orchestra agent --server {} --token $(orchestra node-token <node>) --ca-file {}",
        plane.server_url,
        plane.server_url,
        plane
            .kubeconfig
            .with_file_name("pki")
            .join("ca.crt")
            .display()
    ));
    println!("export KUBECONFIG={}", plane.kubeconfig.display());
    stop_signal().await;
    progress("stopping");
    let _ = stop.send(true);
    plane.join().await
}
