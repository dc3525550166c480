//! The process runtime's resource limits with the real kernel: a container's processes in its
//! cgroup with the limits written, a container over its memory limit OOM-killed, a process limit
//! holding, the cgroup gone with the container — and, without cgroups, the container running all
//! the same with a note.
//!
//! Cgroups need root: when the runtime cannot use them these tests fail if `CI=true`, and are
//! skipped (saying why) otherwise.
#![cfg(feature = "process")]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestra_core::container_runtime::{ContainerConfig, ContainerResources, ContainerRuntime};
use orchestra_runtime::process::cgroup::{CgroupSupport, Hierarchy};
use orchestra_runtime::process::{ProcessRuntime, ProcessRuntimeOptions};
use support::{run, run_to_exit, shell, skip, wait_for_log, wait_until};

const MI: i64 = 1024 * 1024;

/// How long a container is waited for (one filling its memory may take a while).
const WITHIN: Duration = Duration::from_secs(30);

/// A runtime over `state` whose containers' cgroups go under a parent of this test's own, and
/// that parent; `None` (the test skipped) when cgroups cannot be used outside CI.
async fn runtime(state: &Path, test: &str) -> Option<(ProcessRuntime, Parent)> {
    let parent = format!("orchestra-test-{}-{test}", std::process::id());
    let options = ProcessRuntimeOptions::default().with_cgroup_parent(&parent);
    let runtime = ProcessRuntime::open_with_options(state, options)
        .await
        .unwrap();
    match runtime.cgroups() {
        CgroupSupport::Available { hierarchy, .. } => {
            let parent = Parent {
                hierarchy: hierarchy.clone(),
                name: PathBuf::from(parent),
            };
            Some((runtime, parent))
        }
        CgroupSupport::Unavailable(why) => {
            skip(&format!(
                "the runtime cannot use cgroups here (run the tests as root): {why}"
            ))
            .unwrap();
            None
        }
    }
}

/// The test's parent cgroup, removed at the end.
struct Parent {
    hierarchy: Hierarchy,
    name: PathBuf,
}

impl Parent {
    fn directories(&self) -> Vec<PathBuf> {
        ["memory", "cpu", "pids"]
            .iter()
            .filter_map(|controller| self.hierarchy.directory(controller, &self.name))
            .collect()
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        for directory in self.directories() {
            let _ = std::fs::remove_dir(directory);
        }
    }
}

/// A container `name` running `script` on the host with `resources`.
fn container(name: &str, script: &str, resources: ContainerResources) -> ContainerConfig {
    ContainerConfig {
        resources,
        ..shell(name, script)
    }
}

/// A limit of 64 MiB of memory, and no other.
fn memory_limit() -> ContainerResources {
    ContainerResources {
        memory_limit_bytes: Some(64 * MI),
        ..ContainerResources::default()
    }
}

/// The cgroup of `controller` that `/proc/<pid>/cgroup` gives (`0::/path` for cgroup v2).
fn cgroup_of(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = controllers.is_empty() || controllers.split(',').any(|c| c == controller);
        matches.then(|| PathBuf::from(path))
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_container_runs_in_its_cgroup_with_its_limits() {
    let state = tempfile::tempdir().unwrap();
    let Some((runtime, parent)) = runtime(state.path(), "limits").await else {
        return;
    };
    let limits = ContainerResources {
        cpu_shares: Some(512),
        cpu_period: Some(100_000),
        cpu_quota: Some(50_000),
        memory_limit_bytes: Some(64 * MI),
        pids_limit: Some(64),
    };
    let id = run(&runtime, &container("limited", "sleep 60", limits))
        .await
        .unwrap();
    let status = runtime.container_status(&id).await.unwrap();
    assert_eq!(status.message, "", "{status:?}");
    let pid = status.pid.unwrap();
    let expected = Path::new("/").join(&parent.name).join(&id);
    let unified = matches!(parent.hierarchy, Hierarchy::Unified { .. });

    for controller in ["memory", "cpu", "pids"] {
        // The supervising process is in the container's cgroup...
        let cgroup = cgroup_of(pid, controller).unwrap();
        assert_eq!(cgroup, expected, "{controller}");
        // ...and so is the command it started, once it has.
        let directory = parent.hierarchy.directory(controller, &cgroup).unwrap();
        let processes = wait_until(WITHIN, "the command is not in the cgroup", || {
            let procs = read(&directory.join("cgroup.procs"));
            let pids: Vec<u32> = procs.lines().filter_map(|p| p.parse().ok()).collect();
            (pids.len() >= 2).then_some(pids)
        })
        .await
        .unwrap();
        assert!(processes.contains(&pid), "{processes:?}");
    }
    let at = |controller: &str, file: &str| {
        read(
            &parent
                .hierarchy
                .directory(controller, &expected)
                .unwrap()
                .join(file),
        )
    };
    if unified {
        assert_eq!(at("memory", "memory.max"), (64 * MI).to_string());
        assert_eq!(at("cpu", "cpu.max"), "50000 100000");
        assert_eq!(at("cpu", "cpu.weight"), "20");
    } else {
        assert_eq!(at("memory", "memory.limit_in_bytes"), (64 * MI).to_string());
        assert_eq!(at("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(at("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(at("cpu", "cpu.shares"), "512");
    }
    assert_eq!(at("pids", "pids.max"), "64");

    // Removing the container removes its cgroup.
    runtime.remove_container(&id).await.unwrap();
    for controller in ["memory", "cpu", "pids"] {
        let directory = parent.hierarchy.directory(controller, &expected).unwrap();
        assert!(!directory.exists(), "{} is left", directory.display());
    }
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let state = tempfile::tempdir().unwrap();
    let Some((runtime, parent)) = runtime(state.path(), "oom").await else {
        return;
    };
    // `tail` keeps the last ten lines of its input: all 200 MiB of a file without any.
    let hungry = container("hungry", "head -c 200M /dev/zero | tail", memory_limit());
    let (hungry, status) = run_to_exit(&runtime, &hungry, WITHIN).await.unwrap();
    assert_eq!(status.exit_code, Some(137), "{status:?}");
    assert_eq!(status.reason, "OOMKilled", "{status:?}");

    // A container within its limit ends as usual.
    let modest = container(
        "modest",
        "head -c 16M /dev/zero | tail | wc -c",
        memory_limit(),
    );
    let (modest, status) = run_to_exit(&runtime, &modest, WITHIN).await.unwrap();
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (Some(0), "Completed"),
        "{status:?}"
    );
    // Its emptied cgroup is gone with its process.
    for id in [&hungry, &modest] {
        let cgroup = Path::new("/").join(&parent.name).join(id);
        let directory = parent.hierarchy.directory("memory", &cgroup).unwrap();
        assert!(!directory.exists(), "{} is left", directory.display());
    }
    for id in [hungry, modest] {
        runtime.remove_container(&id).await.unwrap();
    }
}

#[tokio::test]
async fn a_container_cannot_start_more_processes_than_its_limit() {
    let state = tempfile::tempdir().unwrap();
    let Some((runtime, _parent)) = runtime(state.path(), "pids").await else {
        return;
    };
    let limits = ContainerResources {
        pids_limit: Some(4),
        ..ContainerResources::default()
    };
    // The shim and the shell are two; two sleeps more are all it may start.
    let script = "for i in 1 2 3 4 5 6; do sleep 1 & done; wait";
    let forky = container("forky", script, limits);
    let (id, status) = run_to_exit(&runtime, &forky, WITHIN).await.unwrap();
    assert_ne!(status.exit_code, Some(0), "{status:?}");
    // dash: "Cannot fork"; bash: "fork: retry: Resource temporarily unavailable".
    let said_fork = |lines: &[(_, String)]| lines.iter().any(|(_, line)| line.contains("fork"));
    let waited = wait_for_log(&runtime, &id, Duration::from_secs(10), said_fork).await;
    assert!(waited.is_ok(), "{status:?} {waited:?}");
    runtime.remove_container(&id).await.unwrap();
}

#[tokio::test]
async fn without_cgroups_a_container_runs_without_its_limits_and_says_so() {
    let state = tempfile::tempdir().unwrap();
    let options = ProcessRuntimeOptions::default().without_cgroups();
    let runtime = ProcessRuntime::open_with_options(state.path(), options)
        .await
        .unwrap();
    let free = container("free", "exit 3", memory_limit());
    let (_, status) = run_to_exit(&runtime, &free, WITHIN).await.unwrap();
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.reason, "Error");
    assert_eq!(
        status.message, "resource limits not applied: turned off",
        "{status:?}"
    );
    // Without limits there is nothing to say.
    let plain = container("plain", "exit 0", ContainerResources::default());
    let (_, status) = run_to_exit(&runtime, &plain, WITHIN).await.unwrap();
    assert_eq!(
        (status.reason.as_str(), status.message.as_str()),
        ("Completed", "")
    );
}
