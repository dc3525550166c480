//! The official Kubernetes Python client (`pip install kubernetes`) against a freshly started
//! `orchestra up`: `tests/python/client_check.py` lists namespaces, creates a namespace, ConfigMaps
//! and a Deployment, reads them back, lists by label selector, patches (strategic merge, JSON
//! merge and JSON patch), watches ADDED and DELETED events from a list's resourceVersion, expects
//! 409 for a stale replace and 404 for a missing object, and deletes the namespace.
//!
//! The client lives in a virtualenv that `scripts/python.sh` makes (scripts/test.sh runs it); the
//! test takes the interpreter from `ORCHESTRA_PYTHON`, else from the virtualenv at
//! `ORCHESTRA_PYTHON_VENV` (`/opt/orchestra-python`). Without the client the test fails under CI
//! and is skipped elsewhere. `ORCHESTRA_PYTHON_DEBUG=1` makes the script print every request and
//! response.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::StopProcesses;
use support::up::{Up, free_port};

const POD_RANGE: &str = "127.97.0.0/16";
const NODE: &str = "python-node";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
/// How long the script may run: it takes seconds; its watches end after 10 s at most.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The interpreter that has the client, if there is one.
fn python_with_client() -> Option<PathBuf> {
    let python = std::env::var_os("ORCHESTRA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv = std::env::var_os("ORCHESTRA_PYTHON_VENV")
                .map_or_else(|| PathBuf::from("/opt/orchestra-python"), PathBuf::from);
            venv.join("bin").join("python")
        });
    let found = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var("CI").is_err(),
        "the Kubernetes Python client does not import with {} (CI needs it): run scripts/python.sh",
        python.display()
    );
    eprintln!(
        "skipped: the Kubernetes Python client does not import with {} (run scripts/python.sh)",
        python.display()
    );
    None
}

/// Reads a child's stream to its end on another thread.
fn collect(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn python_client_drives_orchestra_up() {
    let Some(python) = python_with_client() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _cleanup = StopProcesses(data_dir.clone());
    let up = Up::start(&data_dir, free_port(), NODE, POD_RANGE);

    let mut child = Command::new(&python)
        .arg(SCRIPT)
        .arg(&up.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    print!("{stdout}");
    match status {
        Some(status) => assert!(
            status.success(),
            "{SCRIPT} exited with {status}:\n{stdout}\n{stderr}\n\
             (ORCHESTRA_PYTHON_DEBUG=1 prints every request and response)"
        ),
        None => panic!("{SCRIPT} did not finish within {TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
    up.stop();
}
