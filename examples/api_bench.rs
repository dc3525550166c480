//! API latency over HTTPS under concurrent clients: the figures Kubernetes' API call latency SLO
//! is about (p99 of mutating calls ≤ 1 s; the aim here is ≤ 10 ms).
//!
//! ```text
//! cargo run --release --example api_bench [-- --clients 64 --objects 100 --store embedded|memory
//!                                            --security authn|rbac|both]
//! ```
//!
//! It starts an API server over HTTPS (certificates made in a temporary folder, a bearer token
//! checked on every request; with `--security rbac` also every request authorized by RBAC — the
//! clients' group is bound to `cluster-admin` by a ClusterRoleBinding, not made a privileged
//! group, so the RBAC rules are evaluated — and written to an audit log, as `orchestra server`
//! runs; by default both, one after the other, so that the cost of authorization is measured
//! side by side) on the embedded store (durable: every write is synced to disk
//! before it is acknowledged, as etcd does) or the in-memory store, and runs `--clients` clients,
//! each its own connection, through the remote client (`orchestra_api::remote`), in its own
//! namespace, each watching its namespace. Every client creates `--objects` ConfigMaps, reads
//! each back, and lists its namespace after each create. Figures, one line each:
//!
//! ```text
//! RESULT api_<call>_p50 <ms> ms clients=<n> store=<store> security=<authn|rbac+audit>
//! RESULT api_<call>_p99 <ms> ms clients=<n> store=<store> security=<authn|rbac+audit>
//! ```
//!
//! for `create`, `get`, `list` (of the client's namespace, 1 to `--objects` objects) and
//! `watch_delivery` (from the start of a create to the watch event announcing it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use orchestra::api::ApiServer;
use orchestra::api::audit::AuditLog;
use orchestra::api::authn::{Authentication, StaticTokens};
use orchestra::api::authz::Authorization;
use orchestra::api::authz::bootstrap::ensure_bootstrap_policy;
use orchestra::api::remote::RemoteConfig;
use orchestra::api::tls::{ServingCerts, serve_tls};
use orchestra::core::api::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use orchestra::core::k8s::api::core::v1::{ConfigMap, Namespace};
use orchestra::core::k8s::api::rbac::v1::ClusterRoleBinding;
use orchestra::core::store::MemoryStore;
use orchestra::store::embedded::{EmbeddedOptions, EmbeddedStore};
use tokio::sync::Mutex;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark's settings.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent clients (each its own connection and namespace).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Objects each client creates.
    #[arg(long, default_value_t = 100)]
    objects: usize,
    /// The store: `embedded` (durable) or `memory`.
    #[arg(long, default_value = "embedded")]
    store: String,
    /// What guards the server: `authn` (a token of `system:masters` checked, nothing else),
    /// `rbac` (a token whose group is bound to `cluster-admin` by RBAC, and the audit log), or
    /// `both`: one run after the other, side by side.
    #[arg(long, default_value = "both")]
    security: String,
}

/// How a run's server is guarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    /// Authentication only (the caller is in `system:masters`).
    Authn,
    /// Authentication, RBAC authorization and the audit log.
    Rbac,
}

impl Security {
    fn name(self) -> &'static str {
        match self {
            Security::Authn => "authn",
            Security::Rbac => "rbac+audit",
        }
    }
}

const TOKEN: &str = "api-bench-token";

#[derive(Default)]
struct Samples {
    create: Vec<Duration>,
    get: Vec<Duration>,
    list: Vec<Duration>,
    watch: Vec<Duration>,
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank].as_secs_f64() * 1e3
}

fn config_map(name: &str) -> ConfigMap {
    let mut object = ConfigMap::default();
    object.metadata.name = Some(name.to_owned());
    object.data = Some([("key".to_owned(), "x".repeat(256))].into());
    object
}

async fn start_server(
    client: Client,
    dir: &std::path::Path,
    security: Security,
) -> Result<(SocketAddr, String)> {
    let certs = ServingCerts::load_or_generate(dir, &[]).context("certificates")?;
    if security == Security::Authn {
        let tokens = StaticTokens::parse(&format!("{TOKEN},bench,bench,system:masters\n"))
            .context("tokens")?;
        let server = ApiServer::builder(client)
            .authentication(Authentication::new(Arc::new(tokens)))
            .build();
        return serve(server, &certs).await;
    }
    let tokens =
        StaticTokens::parse(&format!("{TOKEN},bench,bench,benchers\n")).context("tokens")?;
    ensure_bootstrap_policy(&client)
        .await
        .context("the default policy")?;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "benchers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "benchers"}]
    }))?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    let authorization = Authorization::new(client.clone());
    authorization.rbac().wait_until_ready().await;
    let server = ApiServer::builder(client)
        .authentication(Authentication::new(Arc::new(tokens)))
        .authorization(authorization)
        .audit(AuditLog::open(&dir.join("audit.log")).context("the audit log")?)
        .build();
    serve(server, &certs).await
}

async fn serve(server: ApiServer, certs: &ServingCerts) -> Result<(SocketAddr, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let tls = certs.server_config().context("TLS")?;
    tokio::spawn(serve_tls(
        listener,
        tls,
        server.router(),
        std::future::pending(),
    ));
    Ok((address, certs.ca_pem().to_owned()))
}

async fn run_client(
    index: usize,
    config: RemoteConfig,
    objects: usize,
    samples: Arc<Mutex<Samples>>,
) -> Result<()> {
    let client = config.client()?;
    let namespace = format!("bench-{index}");
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let mut events = api.watch(&WatchParams::default(), "0").await?;
    let started: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = Arc::clone(&started);
    let watcher = tokio::spawn(async move {
        let mut delays = Vec::with_capacity(objects);
        while delays.len() < objects {
            match events.next().await {
                Some(WatchEvent::Added(object)) => {
                    let name = object.metadata.name.unwrap_or_default();
                    let start = seen.lock().ok().and_then(|map| map.get(&name).copied());
                    if let Some(start) = start {
                        delays.push(start.elapsed());
                    }
                }
                Some(WatchEvent::Error(status)) => bail!("the watch failed: {:?}", status.message),
                Some(_) => {}
                None => bail!("the watch ended early"),
            }
        }
        Ok(delays)
    });
    let mut local = Samples::default();
    for n in 0..objects {
        let name = format!("cm-{n}");
        let start = Instant::now();
        if let Ok(mut map) = started.lock() {
            map.insert(name.clone(), start);
        }
        api.create(&PostParams::default(), &config_map(&name))
            .await?;
        local.create.push(start.elapsed());
        let start = Instant::now();
        api.get(&name).await?;
        local.get.push(start.elapsed());
        let start = Instant::now();
        let list = api.list(&ListParams::default()).await?;
        local.list.push(start.elapsed());
        if list.items.len() != n + 1 {
            bail!("listed {} objects, created {}", list.items.len(), n + 1);
        }
    }
    local.watch = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .context("watch events did not all arrive")???;
    let mut all = samples.lock().await;
    all.create.extend(local.create);
    all.get.extend(local.get);
    all.list.extend(local.list);
    all.watch.extend(local.watch);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let runs = match args.security.as_str() {
        "authn" => vec![Security::Authn],
        "rbac" => vec![Security::Rbac],
        "both" => vec![Security::Authn, Security::Rbac],
        other => bail!("unknown security {other:?}: authn, rbac or both"),
    };
    for security in runs {
        run(&args, security).await?;
    }
    Ok(())
}

/// One run: a fresh store and server guarded by `security`, and the clients against it.
async fn run(args: &Args, security: Security) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let client = match args.store.as_str() {
        "embedded" => Client::new(EmbeddedStore::open(
            dir.path().join("store"),
            EmbeddedOptions::default(),
        )?),
        "memory" => Client::new(MemoryStore::new()),
        other => bail!("unknown store {other:?}: embedded or memory"),
    };
    client.bootstrap().await?;
    let (address, ca_pem) = start_server(client, dir.path(), security).await?;
    let config = RemoteConfig {
        server: format!("https://{address}"),
        ca_pem: Some(ca_pem),
        token: Some(TOKEN.to_owned()),
    };
    let samples = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        tasks.push(tokio::spawn(run_client(
            index,
            config.clone(),
            args.objects,
            Arc::clone(&samples),
        )));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let samples = std::mem::take(&mut *samples.lock().await);
    let calls = samples.create.len() + samples.get.len() + samples.list.len();
    let suffix = format!(
        "clients={} store={} security={}",
        args.clients,
        args.store,
        security.name()
    );
    for (name, mut list) in [
        ("create", samples.create),
        ("get", samples.get),
        ("list", samples.list),
        ("watch_delivery", samples.watch),
    ] {
        let p50 = percentile(&mut list, 0.50);
        let p99 = percentile(&mut list, 0.99);
        println!("RESULT api_{name}_p50 {p50:.2} ms {suffix}");
        println!(
            "RESULT api_{name}_p99 {p99:.2} ms {suffix} (aim <= 10 ms; Kubernetes SLO 1000 ms)"
        );
    }
    println!(
        "RESULT api_throughput {:.0} calls/s {suffix} ({calls} calls in {:.1} s)",
        calls as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
