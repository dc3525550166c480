//! The parts `orchestra up`, `orchestra server` and `orchestra agent` assemble: the control plane
//! (store, API server over HTTPS, controllers, scheduler) and a node agent with the process
//! runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use orchestra_api::ApiServer;
use orchestra_api::audit::AuditLog;
use orchestra_api::authn::{
    Authentication, Chain, ServiceAccountTokens, StaticTokens, TokenFile, ensure_token, node_token,
};
use orchestra_api::authz::Authorization;
use orchestra_api::authz::bootstrap::ensure_bootstrap_policy;
use orchestra_api::kubeconfig::Kubeconfig;
use orchestra_api::logs::{KUBELET_CLIENT_USER, NodeLogs, RuntimeLogs};
use orchestra_api::remote::RemoteConfig;
use orchestra_api::tls::{ServingCerts, serve_tls};
use orchestra_core::api::{Api, Client};
use orchestra_core::controllers::manager::ControllerManager;
use orchestra_core::controllers::token::{SigningKey, TokenIssuer};
use orchestra_core::k8s::api::core::v1::{Node, NodeAddress};
use orchestra_core::node_agent::agent::{NodeAgent, NodeAgentConfig};
use orchestra_core::node_agent::heartbeat::NodeConfig;
use orchestra_core::node_agent::host::NodeResources;
use orchestra_core::node_agent::service_account::ApiServerAddress;
use orchestra_core::rbac::{CONTROLLER_MANAGER_USER, SCHEDULER_USER};
use orchestra_core::scheduler::Scheduler;
use orchestra_net::loopback::LoopbackNetwork;
use orchestra_runtime::host::HostResources;
use orchestra_runtime::process::ProcessRuntime;
use orchestra_store::embedded::{EmbeddedOptions, EmbeddedStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs a command's future on a multi-threaded runtime: exit 0 when it succeeds, 1 with its
/// error when it fails, 2 when no runtime can be started.
pub(crate) fn run_to_exit(command: impl Future<Output = Result<()>>) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints a line of progress.
pub(crate) fn progress(message: impl std::fmt::Display) {
    eprintln!("orchestra: {message}");
}

/// A signal every part of the process stops on.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown signal and the sender that raises it.
    pub(crate) fn new() -> (watch::Sender<bool>, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (sender, Shutdown { receiver })
    }

    /// Resolves when shutdown is raised (or its sender is gone).
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.receiver.clone();
        async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The store the control plane keeps its objects in.
pub(crate) enum StoreChoice {
    /// The embedded store, in a data folder.
    Embedded(PathBuf),
    /// etcd, at these endpoints.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Etcd(Vec<String>),
}

/// Opens the chosen store and returns a client over it.
pub(crate) async fn open_store(choice: &StoreChoice) -> Result<Client> {
    match choice {
        StoreChoice::Embedded(dir) => {
            let store = EmbeddedStore::open(dir, EmbeddedOptions::default())
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            Ok(Client::new(store))
        }
        #[cfg(feature = "etcd")]
        StoreChoice::Etcd(endpoints) => {
            use orchestra_store::etcd::{EtcdOptions, EtcdStore};
            let store = EtcdStore::connect(endpoints, EtcdOptions::new())
                .await
                .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))?;
            Ok(Client::new(store))
        }
        #[cfg(not(feature = "etcd"))]
        StoreChoice::Etcd(_) => {
            bail!("this orchestra was built without etcd support (build with --features etcd)")
        }
    }
}

/// The service-account signing key in `pki`, made on first start.
fn signing_key(pki: &Path) -> Result<SigningKey> {
    let path = pki.join("sa.key");
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return SigningKey::from_pem(&pem)
            .with_context(|| format!("{} is not a signing key", path.display()));
    }
    let key = SigningKey::generate().context("cannot generate the signing key")?;
    let pem = key
        .to_pkcs8_pem()
        .context("cannot encode the signing key")?;
    write_private(&path, pem.as_bytes())?;
    Ok(key)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The settings of a control plane.
pub(crate) struct ControlPlaneConfig {
    /// Where certificates, keys, tokens and the kubeconfig live.
    pub(crate) data_dir: PathBuf,
    /// The address the API server listens on.
    pub(crate) listen: SocketAddr,
    /// The runtime of the all-in-one node, whose logs the server reads directly; without one,
    /// logs are fetched from the pods' nodes.
    pub(crate) logs: Option<Arc<ProcessRuntime>>,
}

/// A running control plane.
pub(crate) struct ControlPlane {
    /// The kubeconfig written for the admin.
    pub(crate) kubeconfig: PathBuf,
    /// The API server's URL.
    pub(crate) server_url: String,
    /// The cluster CA (PEM), which the API server's certificate chains to.
    pub(crate) ca_pem: String,
    /// The token file (read again by the server when it changes).
    token_file: PathBuf,
    tasks: Vec<(&'static str, JoinHandle<Result<()>>)>,
}

impl ControlPlane {
    /// Starts the API server, the controllers and the scheduler on `client`'s store.
    pub(crate) async fn start(
        client: Client,
        config: ControlPlaneConfig,
        shutdown: &Shutdown,
    ) -> Result<ControlPlane> {
        client
            .bootstrap()
            .await
            .context("cannot create the system namespaces")?;
        let pki = config.data_dir.join("pki");
        std::fs::create_dir_all(&pki)
            .with_context(|| format!("cannot create {}", pki.display()))?;
        let mut sans = vec![config.listen.ip().to_string()];
        if config.listen.ip().is_unspecified() {
            sans.push("127.0.0.1".to_owned());
        }
        let certs = ServingCerts::load_or_generate(&pki, &sans)
            .context("cannot set up the serving certificate")?;
        if certs.generated_ca() {
            progress(format!("made a new cluster CA in {}", pki.display()));
        }
        let issuer = TokenIssuer::new(signing_key(&pki)?);
        // The in-process client signs the tokens of `serviceaccounts/token`.
        client.set_token_issuer(issuer.clone());
        let token_file = pki.join("tokens.csv");
        let (_, admin_token) =
            StaticTokens::generate_admin(&token_file).context("cannot set up the admin token")?;
        // Read again when `orchestra node-token` adds a node's token.
        let tokens = TokenFile::open(&token_file).context("cannot read the token file")?;
        let authenticator = Chain::new().with(tokens).with(ServiceAccountTokens::new(
            issuer.verifier().accept_legacy(true),
            client.clone(),
        ));
        let policy = ensure_bootstrap_policy(&client)
            .await
            .context("cannot write the default RBAC policy")?;
        if !policy.created.is_empty() {
            progress(format!(
                "wrote the default RBAC policy ({} objects)",
                policy.created.len()
            ));
        }
        let audit_path = config.data_dir.join("audit.log");
        let audit = AuditLog::open(&audit_path)
            .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?;
        let mut builder = ApiServer::builder(client.clone())
            .authentication(Authentication::new(Arc::new(authenticator)))
            .authorization(Authorization::new(client.clone()))
            .audit(audit);
        builder = match &config.logs {
            Some(runtime) => builder.logs(Arc::new(RuntimeLogs::new(runtime.clone()))),
            None => {
                // The identity the server reads nodes' logs as.
                let token =
                    ensure_token(&token_file, KUBELET_CLIENT_USER, KUBELET_CLIENT_USER, &[])
                        .context("cannot set up the server's token for nodes")?;
                builder.logs(Arc::new(NodeLogs::new(client.clone()).with_token(token)))
            }
        };
        let server = builder.build();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let host = if address.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            address.ip().to_string()
        };
        let server_url = format!("https://{host}:{}", address.port());
        let tls = certs.server_config().context("cannot set up TLS")?;
        let mut tasks: Vec<(&'static str, JoinHandle<Result<()>>)> = Vec::new();
        let stop = shutdown.wait();
        tasks.push((
            "API server",
            tokio::spawn(async move {
                serve_tls(listener, tls, server.router(), stop)
                    .await
                    .context("the API server failed")
            }),
        ));
        progress(format!("API server listening on {server_url}"));

        let kubeconfig = config.data_dir.join("kubeconfig");
        Kubeconfig::new(&server_url, certs.ca_pem(), "admin", &admin_token)
            .write(&kubeconfig)
            .with_context(|| format!("cannot write {}", kubeconfig.display()))?;

        // The controllers and the scheduler call the API server as their own users, so that
        // the default policy's roles for them (least privilege) are what they work with.
        let as_component =
            |user: &str| component_client(&server_url, certs.ca_pem(), &token_file, user, &[]);
        let manager = ControllerManager::new(as_component(CONTROLLER_MANAGER_USER)?)
            .token_issuer(issuer)
            .root_ca(certs.ca_pem().as_bytes().to_vec());
        let stop = shutdown.wait();
        tasks.push((
            "controller manager",
            tokio::spawn(async move { manager.run(stop).await.context("the controllers failed") }),
        ));
        let stop = shutdown.wait();
        let scheduler = Scheduler::new(as_component(SCHEDULER_USER)?);
        tasks.push((
            "scheduler",
            tokio::spawn(async move { scheduler.run(stop).await.context("the scheduler failed") }),
        ));
        progress("controllers and scheduler started");
        Ok(ControlPlane {
            kubeconfig,
            server_url,
            ca_pem: certs.ca_pem().to_owned(),
            token_file,
            tasks,
        })
    }

    /// A client of this control plane's API server as the agent of node `node`
    /// (`system:node:<node>`, which the node authorizer restricts to the node's own objects).
    pub(crate) fn node_client(&self, node: &str) -> Result<Client> {
        let token = node_token(&self.token_file, node)
            .with_context(|| format!("cannot make the token of node {node}"))?;
        remote_client(&self.server_url, &self.ca_pem, token)
    }

    /// Waits for every part to stop (after shutdown is raised), reporting failures.
    pub(crate) async fn join(self) -> Result<()> {
        join_all(self.tasks).await
    }
}

/// A client of the API server at `server_url` as `user` (in `groups`), whose token is made in the
/// token file on first use.
fn component_client(
    server_url: &str,
    ca_pem: &str,
    token_file: &Path,
    user: &str,
    groups: &[&str],
) -> Result<Client> {
    let token = ensure_token(token_file, user, user, groups)
        .with_context(|| format!("cannot make the token of {user}"))?;
    remote_client(server_url, ca_pem, token)
}

fn remote_client(server_url: &str, ca_pem: &str, token: String) -> Result<Client> {
    RemoteConfig {
        server: server_url.to_owned(),
        ca_pem: Some(ca_pem.to_owned()),
        token: Some(token),
    }
    .client()
    .context("cannot set up an API client")
}

/// Waits for tasks, reporting each failure; the first is returned.
pub(crate) async fn join_all(tasks: Vec<(&'static str, JoinHandle<Result<()>>)>) -> Result<()> {
    let mut first = None;
    for (name, task) in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(error) => Err(anyhow::anyhow!("the {name} panicked: {error}")),
        };
        if let Err(error) = outcome {
            progress(format!("{name}: {error:#}"));
            first.get_or_insert(error);
        }
    }
    match first {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The settings of a node agent.
pub(crate) struct AgentConfig {
    /// The node's name.
    pub(crate) node_name: String,
    /// Where the runtime keeps its state (containers, logs, images) and the network its leases.
    pub(crate) data_dir: PathBuf,
    /// The addresses pods get (loopback addresses: pods share the host's network namespace).
    pub(crate) pod_range: String,
    /// The node's address (its `InternalIP`).
    pub(crate) address: std::net::IpAddr,
    /// The port it serves its pods' logs on, at its address (kubelet's 10250), if any.
    pub(crate) log_port: Option<u16>,
    /// The API server's URL, as pods are told it (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub(crate) api_server: Option<String>,
    /// The cluster CA (PEM), written into pods' service-account token volumes as `ca.crt`.
    pub(crate) ca_pem: Option<String>,
}

/// The host and port of an API server's URL (`https://127.0.0.1:6443`, the scheme's port when
/// none is given).
fn api_server_address(url: &str) -> Option<ApiServerAddress> {
    let (default_port, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (443, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (80, rest)
    } else {
        return None;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 address: `[::1]:6443`.
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| ApiServerAddress {
        host: host.to_owned(),
        port,
    })
}

/// Opens the process runtime of an agent's data folder.
pub(crate) async fn open_runtime(data_dir: &Path) -> Result<Arc<ProcessRuntime>> {
    let runtime = ProcessRuntime::open(data_dir.join("runtime"))
        .await
        .with_context(|| format!("cannot open the runtime in {}", data_dir.display()))?;
    Ok(Arc::new(runtime))
}

/// Starts a node agent with the process runtime.
pub(crate) fn start_agent(
    client: Client,
    config: &AgentConfig,
    runtime: Arc<ProcessRuntime>,
    shutdown: &Shutdown,
) -> Result<JoinHandle<Result<()>>> {
    let network = LoopbackNetwork::open(config.data_dir.join("network"), &config.pod_range)
        .with_context(|| format!("cannot set up the pod network {}", config.pod_range))?;
    let resources =
        HostResources::new(&config.data_dir).context("cannot read the host's resources")?;
    let mut node = NodeConfig::new(&config.node_name, resources.capacity());
    node.addresses = vec![
        NodeAddress {
            type_: "InternalIP".to_owned(),
            address: config.address.to_string(),
        },
        NodeAddress {
            type_: "Hostname".to_owned(),
            address: config.node_name.clone(),
        },
    ];
    node.kubelet_port = config.log_port.map(i32::from);
    let mut agent_config = NodeAgentConfig::new(node);
    agent_config.pods_dir = Some(config.data_dir.join("pods"));
    agent_config.root_ca_pem = config.ca_pem.clone();
    agent_config.api_server = config.api_server.as_deref().and_then(api_server_address);
    let agent = NodeAgent::new(client, agent_config, runtime)
        .with_network(Arc::new(network))
        .with_resources(Arc::new(resources));
    let stop = shutdown.wait();
    Ok(tokio::spawn(async move {
        agent.run(stop).await.context("the node agent failed")
    }))
}

/// Waits until the node is registered and Ready.
pub(crate) async fn wait_node_ready(client: &Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..600 {
        if let Ok(Some(node)) = nodes.get_opt(node).await {
            let ready = node
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True");
            if ready {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("node {node} did not become Ready within a minute")
}

/// This host's name, the default node name.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "orchestra-node".to_owned())
}
