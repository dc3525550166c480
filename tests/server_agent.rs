//! `orchestra server` and `orchestra agent` as separate processes, driven with the real
//! `kubectl`: the control plane alone, and node agents that join it over its API (one with
//! `--server`, `--token` and `--ca-file`, one with `--kubeconfig`), run a Deployment of the
//! `hello_server` example as one `orchestra up` does — rolled out, its logs read, scaled down,
//! deleted — and both stop cleanly on Ctrl-C.
//!
//! kubectl is on the machine (scripts install nothing for it); without it the test fails under
//! CI and is skipped elsewhere.

mod support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::up::{free_port, kubectl_available};
use support::{StopProcesses, hello_server};

const NODE: &str = "agent-node";
const NODE_2: &str = "agent-node-2";
const POD_RANGE: &str = "127.99.0.0/17";
const POD_RANGE_2: &str = "127.99.128.0/17";

/// A running `orchestra` child process, its standard error copied to ours line by line with
/// its name in front (so the server's and the agents' progress can be told apart).
struct Orchestra {
    name: &'static str,
    child: Child,
}

impl Orchestra {
    /// Starts `orchestra args`, its standard output piped.
    fn spawn(name: &'static str, args: &[&str], extra: impl FnOnce(&mut Command)) -> Orchestra {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestra"));
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        extra(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{name}] {line}");
            }
        });
        Orchestra { name, child }
    }

    /// The lines of its standard output, until one starts with `prefix`: the rest of it.
    fn wait_line(&mut self, prefix: &str) -> String {
        let stdout = self.child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{} ended before it printed {prefix:?}", self.name))
                .unwrap();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Whether it has exited already (with how).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Stops it as Ctrl-C does, and waits for it to exit 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exited() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Orchestra {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kubectl against the server's kubeconfig.
struct Kubectl(PathBuf);

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.0)
            .output()
            .unwrap()
    }

    /// Runs kubectl, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Polls `kubectl args` until its output satisfies `done` (at most 90 s).
    fn until(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let output = self.run(args);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && done(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never got there; last:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The hello pods as `name node ip phase deleting` lines.
    fn hello_pods(&self) -> Vec<Vec<String>> {
        let out = self.ok(&[
            "get",
            "pods",
            "-l",
            "app=hello",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        out.lines()
            .map(|line| line.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    /// Polls the hello pods until `done` holds for them (at most 90 s).
    fn until_pods(&self, what: &str, done: impl Fn(&[Vec<String>]) -> bool) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pods = self.hello_pods();
            if done(&pods) {
                return pods;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}: {pods:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn deployment(dir: &Path) -> String {
    let hello = hello_server();
    let manifest = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 3
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: hello
        image: hello:1
        command: [{hello:?}]
        args: [--listen, 127.0.0.1:0]
",
        hello = hello.to_string_lossy()
    );
    let path = dir.join("hello.yaml");
    std::fs::write(&path, manifest).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn server_and_agents_run_a_deployment() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let agent_dir = dir.path().join("agent");
    let agent_dir_2 = dir.path().join("agent-2");
    let _cleanup = StopProcesses(agent_dir.clone());
    let _cleanup_2 = StopProcesses(agent_dir_2.clone());
    let port = free_port();

    // The control plane alone.
    let mut server = Orchestra::spawn(
        "server",
        &[
            "server",
            "--data-dir",
            &server_dir.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        |_| {},
    );
    let kubeconfig = PathBuf::from(server.wait_line("export KUBECONFIG="));
    let pki = server_dir.join("pki");
    let tokens = std::fs::read_to_string(pki.join("tokens.csv")).unwrap();
    let token = tokens
        .lines()
        .next()
        .and_then(|line| line.split(',').next())
        .unwrap()
        .to_owned();
    assert!(!token.is_empty(), "no admin token in {tokens:?}");
    let kubectl = Kubectl(kubeconfig.clone());
    let nodes = kubectl.ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.trim().is_empty(), "a node before any agent: {nodes}");

    // An agent given the server, its node's token and the CA: it runs as system:node:<NODE>,
    // which the node authorizer restricts to its own objects.
    let node_token = std::process::Command::new(env!("CARGO_BIN_EXE_orchestra"))
        .args([
            "node-token",
            NODE,
            "--data-dir",
            &server_dir.to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(node_token.status.success(), "{node_token:?}");
    let node_token = String::from_utf8(node_token.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(node_token, token);
    let mut agent = Orchestra::spawn(
        "agent",
        &[
            "agent",
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--token",
            &node_token,
            "--ca-file",
            &pki.join("ca.crt").to_string_lossy(),
            "--data-dir",
            &agent_dir.to_string_lossy(),
            "--node-name",
            NODE,
            "--pod-range",
            POD_RANGE,
            "--log-listen",
            "127.0.0.1:0",
        ],
        |_| {},
    );
    // An agent given the kubeconfig (and no token in its environment).
    let mut agent_2 = Orchestra::spawn(
        "agent-2",
        &[
            "agent",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--data-dir",
            &agent_dir_2.to_string_lossy(),
            "--node-name",
            NODE_2,
            "--pod-range",
            POD_RANGE_2,
            "--log-listen",
            "127.0.0.1:0",
        ],
        |command| {
            command.env_remove("ORCHESTRA_TOKEN");
        },
    );

    let ready = |out: &str, node: &str| {
        out.lines()
            .any(|line| line.split_whitespace().take(2).eq([node, "Ready"]))
    };
    let nodes = kubectl.until(&["get", "nodes"], |out| {
        ready(out, NODE) && ready(out, NODE_2)
    });
    eprintln!("{nodes}");
    assert!(agent.exited().is_none() && agent_2.exited().is_none());
    // The node's token reaches its own Node, not the other's, nor every pod.
    let as_node = format!("--token={node_token}");
    kubectl.ok(&["get", "node", NODE, &as_node]);
    for refused in [
        vec!["get", "node", NODE_2, &as_node],
        vec!["get", "pods", "-A", &as_node],
        vec!["get", "secrets", "-A", &as_node],
    ] {
        let output = kubectl.run(&refused);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("Forbidden"),
            "{refused:?}: {stderr}"
        );
    }

    // A Deployment of three replicas runs on the agents' nodes, with their addresses.
    let manifest = deployment(dir.path());
    let created = kubectl.ok(&["apply", "-f", &manifest]);
    assert!(
        created.contains("deployment.apps/hello created"),
        "{created}"
    );
    let status = kubectl.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    kubectl.until(&["get", "deployment", "hello"], |out| out.contains("3/3"));
    let pods = kubectl.until_pods("3 running pods", |pods| {
        pods.len() == 3 && pods.iter().all(|pod| pod.len() == 4 && pod[3] == "Running")
    });
    eprintln!("{pods:?}");
    for pod in &pods {
        let (node, ip) = (&pod[1], &pod[2]);
        let ip: Ipv4Addr = ip.parse().unwrap();
        let [a, b, c, _] = ip.octets();
        assert_eq!((a, b), (127, 99), "{pod:?}");
        match node.as_str() {
            NODE => assert!(c < 128, "{pod:?} not from {POD_RANGE}"),
            NODE_2 => assert!(c >= 128, "{pod:?} not from {POD_RANGE_2}"),
            other => panic!("pod on a node no agent runs, {other}: {pod:?}"),
        }
    }
    let mut ips: Vec<&String> = pods.iter().map(|pod| &pod[2]).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "{pods:?}");

    // Logs come from the agent that runs the pod: the server, which runs no node itself, fetches
    // them from the node's log endpoint.
    for pod in &pods {
        let logs = kubectl.ok(&["logs", &pod[0]]);
        assert!(
            logs.contains("hello (version 1) listening on 127.0.0.1:"),
            "logs of {pod:?}:\n{logs}"
        );
    }

    // The node's log endpoint itself serves only callers the API server allows `nodes/proxy`:
    // not an anonymous one, nor a node's own token.
    let port = kubectl.ok(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let pod = pods
        .iter()
        .find(|pod| pod[1] == NODE)
        .expect("a pod on the first node");
    let path = format!("/containerLogs/default/{}/hello", pod[0]);
    for (token, expected) in [(None, "401"), (Some(node_token.as_str()), "403")] {
        let status = http_get_status(&format!("127.0.0.1:{}", port.trim()), &path, token);
        assert_eq!(
            status, expected,
            "the node's log endpoint with token {token:?}"
        );
    }

    // Scaled to one, two pods go.
    kubectl.ok(&["scale", "deployment/hello", "--replicas=1"]);
    let left = kubectl.until_pods("1 pod left", |pods| pods.len() == 1);
    assert!(
        pods.iter().any(|pod| pod[0] == left[0][0]),
        "{left:?} is not one of {pods:?}"
    );
    kubectl.until(&["get", "deployment", "hello"], |out| out.contains("1/1"));

    // Deleted, the last pod goes.
    let deleted = kubectl.ok(&["delete", "deployment", "hello"]);
    assert!(
        deleted.contains("deployment.apps \"hello\" deleted"),
        "{deleted}"
    );
    kubectl.until_pods("no pods", <[Vec<String>]>::is_empty);

    agent.stop();
    agent_2.stop();
    server.stop();
}

/// The status code of a plain HTTP GET (the agents' log endpoints speak HTTP/1.1).
fn http_get_status(address: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}
