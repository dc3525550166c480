//! The real `kubectl` against a freshly started `orchestra up`: the voting-app fixture applied and
//! listed, a deployment of the `hello_server` example created, scaled, rolled out, changed and
//! rolled back, its logs read; server-side apply with its conflicts; `explain`; a stale replace
//! and an invalid manifest refused; and everything kept across a restart of `orchestra up`.
//!
//! kubectl is on the machine (scripts install nothing for it); without it the test fails under
//! CI and is skipped elsewhere.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{StopProcesses, hello_server};

const POD_RANGE: &str = "127.96.0.0/16";
const NODE: &str = "kubectl-node";
const FIXTURES: &str = "../shared/fixtures/voting-app";

fn kubectl_available() -> bool {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "kubectl is not on this machine (CI needs it)"
        );
        eprintln!("skipped: kubectl is not on this machine");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `orchestra up`.
struct Up {
    child: Child,
    kubeconfig: PathBuf,
}

impl Up {
    /// Starts `orchestra up` on `data_dir` and waits for the line that says it is ready.
    fn start(data_dir: &Path, port: u16) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestra"))
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--node-name", NODE, "--pod-range", POD_RANGE])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let kubeconfig = loop {
            let line = lines
                .next()
                .expect("orchestra up ended before it was ready")
                .unwrap();
            if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
                break PathBuf::from(path);
            }
        };
        Up { child, kubeconfig }
    }

    /// Stops it as Ctrl-C does, and waits for it to exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "orchestra up exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "orchestra up did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
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

    /// Runs kubectl, which must fail; its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "kubectl {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }

    /// Polls `kubectl args` until its output satisfies `done`.
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
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn kubectl_drives_orchestra_up() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _cleanup = StopProcesses(data_dir.clone());
    let port = free_port();
    let up = Up::start(&data_dir, port);

    // The voting app, as it is, with kubectl's default (strict, server-side) validation.
    let applied = up.ok(&["apply", "-f", FIXTURES]);
    for line in [
        "deployment.apps/vote created",
        "service/vote created",
        "deployment.apps/worker created",
    ] {
        assert!(applied.contains(line), "{applied}");
    }
    let wide = up.until(&["get", "pods,deploy,rs,svc", "-o", "wide"], |out| {
        out.lines().filter(|line| line.starts_with("pod/")).count() == 5
    });
    for expected in [
        "NAME ",
        "READY",
        "STATUS",
        "NOMINATED NODE",
        "deployment.apps/vote",
        "dockersamples/examplevotingapp_vote",
        "replicaset.apps/vote-",
        "service/vote",
        "NodePort",
        "8080:31000/TCP",
        "app=vote",
        NODE,
    ] {
        assert!(wide.contains(expected), "no {expected:?} in\n{wide}");
    }
    let described = up.ok(&["describe", "deployment", "vote"]);
    for expected in [
        "Name:",
        "vote",
        "Selector:",
        "app=vote",
        "StrategyType:",
        "RollingUpdate",
        "ScalingReplicaSet",
    ] {
        assert!(
            described.contains(expected),
            "no {expected:?} in\n{described}"
        );
    }

    // A deployment made by `kubectl create` (a protobuf body), then scaled and rolled out.
    let hello = hello_server();
    let created = up.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=hello:1",
        "--",
        &hello.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        created.contains("deployment.apps/hello created"),
        "{created}"
    );
    up.ok(&["scale", "deployment/hello", "--replicas=5"]);
    let status = up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    up.until(&["get", "deployment", "hello"], |out| out.contains("5/5"));

    // Changes make revisions; undo goes back to the previous one.
    up.ok(&["set", "image", "deployment/hello", "hello=hello:2"]);
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    up.ok(&["set", "env", "deployment/hello", "GREETING=hi"]);
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    let env = up.ok(&[
        "get",
        "deployment/hello",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(env.contains("GREETING"), "{env}");
    let undone = up.ok(&["rollout", "undo", "deployment/hello"]);
    assert!(undone.contains("rolled back"), "{undone}");
    up.ok(&["rollout", "status", "deployment/hello", "--timeout=90s"]);
    let template = up.ok(&[
        "get",
        "deployment/hello",
        "-o",
        "jsonpath={.spec.template.spec.containers[0]}",
    ]);
    assert!(
        template.contains("hello:2") && !template.contains("GREETING"),
        "{template}"
    );
    let waited = up.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/hello",
        "--timeout=60s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");
    let logs = up.until(&["logs", "deployment/hello"], |out| {
        out.contains("listening on 127.0.0.1:")
    });
    assert!(logs.contains("hello (version"), "{logs}");

    // Server-side apply: created, then re-applied, then refused for a field another manager owns.
    let settings = write(
        dir.path(),
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
    );
    let applied = up.ok(&["apply", "--server-side", "-f", &settings]);
    assert!(
        applied.contains("configmap/settings serverside-applied"),
        "{applied}"
    );
    let other = write(
        dir.path(),
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: slow\n",
    );
    let conflict = up.fails(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &other,
    ]);
    assert!(
        conflict.contains("conflict") && conflict.contains(".data.mode"),
        "{conflict}"
    );
    let forced = up.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert!(forced.contains("serverside-applied"), "{forced}");
    let mode = up.ok(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(mode, "slow");

    // explain reads the OpenAPI v3 documents.
    let explained = up.ok(&["explain", "deployment.spec.strategy"]);
    for expected in [
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "rollingUpdate",
        "RollingUpdateDeployment",
    ] {
        assert!(
            explained.contains(expected),
            "no {expected:?} in\n{explained}"
        );
    }

    // A replace from a stale copy is refused with a conflict.
    let stale = up.ok(&["get", "deployment", "vote", "-o", "json"]);
    let stale = write(dir.path(), "stale.json", &stale);
    up.ok(&["annotate", "deployment", "vote", "touched=yes"]);
    let refused = up.fails(&["replace", "-f", &stale]);
    assert!(
        refused.contains("Conflict") && refused.contains("the object has been modified"),
        "{refused}"
    );

    // An invalid manifest is refused with its field paths.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  replicas: -2\n  selector:\n    matchLabels: {app: bad}\n  template:\n    metadata:\n      labels: {app: bad}\n    spec:\n      containers:\n      - {name: c, image: x}\n",
    );
    let invalid = up.fails(&["apply", "-f", &bad]);
    assert!(
        invalid.contains("spec.replicas: Invalid value: -2"),
        "{invalid}"
    );
    let unknown = write(
        dir.path(),
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\ndataa:\n  a: b\n",
    );
    let strict = up.fails(&["apply", "-f", &unknown]);
    assert!(strict.contains("dataa"), "{strict}");

    // Delete.
    let deleted = up.ok(&["delete", "deployment", "worker"]);
    assert!(
        deleted.contains("deployment.apps \"worker\" deleted"),
        "{deleted}"
    );
    let gone = up.fails(&["get", "deployment", "worker"]);
    assert!(gone.contains("NotFound"), "{gone}");

    // A restart keeps the objects and the running pods (the same containers, not restarted).
    let pods_before = up.ok(&[
        "get",
        "pods",
        "-l",
        "app=hello",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
    ]);
    up.stop();
    let up = Up::start(&data_dir, port);
    let kept = up.ok(&["get", "deployments", "-o", "name"]);
    for name in [
        "deployment.apps/hello",
        "deployment.apps/vote",
        "deployment.apps/db",
    ] {
        assert!(kept.contains(name), "{kept}");
    }
    assert!(!kept.contains("worker"), "{kept}");
    assert_eq!(
        up.ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "slow"
    );
    let pods_after = up.until(
        &[
            "get",
            "pods",
            "-l",
            "app=hello",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
        ],
        |out| !out.trim().is_empty(),
    );
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&pods_before), sorted(&pods_after));
    up.until(&["get", "deployment", "hello"], |out| out.contains("5/5"));
    up.stop();
}
