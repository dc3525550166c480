//! `orchestra up` as a child process, and `kubectl` against it: what the tests of the
//! Kubernetes-compatible API share.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether kubectl is on this machine: under CI (env `CI` set) its absence fails the test,
/// elsewhere the test is skipped.
pub(crate) fn kubectl_available() -> bool {
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

/// A free port of 127.0.0.1 (free when asked; the caller binds it soon after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `orchestra up`.
pub(crate) struct Up {
    /// The running process.
    pub(crate) child: Child,
    /// The admin kubeconfig it wrote.
    pub(crate) kubeconfig: PathBuf,
}

impl Up {
    /// Starts `orchestra up` on `data_dir` and waits for the line that says it is ready.
    pub(crate) fn start(data_dir: &Path, port: u16, node: &str, pod_range: &str) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestra"))
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--node-name", node, "--pod-range", pod_range])
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
    pub(crate) fn stop(mut self) {
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

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap()
    }

    /// Runs kubectl, which must succeed; its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
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
    pub(crate) fn fails(&self, args: &[&str]) -> String {
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
    pub(crate) fn until(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
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
