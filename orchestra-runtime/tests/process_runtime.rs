//! The process runtime with real processes: commands, environment, output, exit codes, graceful
//! stop, exec, and adoption by a restarted runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestra_core::container_runtime::{
    ContainerConfig, ContainerMetadata, ContainerRuntime, ContainerState, ContainerStatus,
    LogOptions, LogStream, PodSandboxConfig, PodSandboxMetadata, RuntimeError,
};
use orchestra_runtime::process::ProcessRuntime;

fn sandbox(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        ..PodSandboxConfig::default()
    }
}

fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        },
        image: "host".to_owned(),
        command: vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()],
        env: vec![("POD_NAME".to_owned(), name.to_owned())],
        ..ContainerConfig::default()
    }
}

/// Starts `script` in a new sandbox; the container's id.
async fn run(runtime: &ProcessRuntime, name: &str, config: ContainerConfig) -> String {
    let sandbox = sandbox(name);
    let sandbox_id = runtime.run_pod_sandbox(&sandbox).await.unwrap();
    let id = runtime
        .create_container(&sandbox_id, &config, &sandbox)
        .await
        .unwrap();
    runtime.start_container(&id).await.unwrap();
    id
}

/// Polls the container until `done` holds (at most 10 s).
async fn wait_for(
    runtime: &ProcessRuntime,
    id: &str,
    done: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = runtime.container_status(id).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn log_text(runtime: &ProcessRuntime, id: &str) -> Vec<(LogStream, String)> {
    let lines: Vec<_> = runtime
        .container_logs(id, &LogOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    lines
        .into_iter()
        .map(|line| {
            let line = line.unwrap();
            (
                line.stream,
                String::from_utf8_lossy(&line.content).into_owned(),
            )
        })
        .collect()
}

/// Waits until the log has `count` lines.
async fn wait_for_lines(
    runtime: &ProcessRuntime,
    id: &str,
    count: usize,
) -> Vec<(LogStream, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log_text(runtime, id).await;
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {count} lines: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn exited(status: &ContainerStatus) -> bool {
    status.state == ContainerState::Exited
}

#[tokio::test]
async fn a_container_runs_its_command_with_its_environment_and_its_output_is_logged() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let mut config = container(
        "web",
        "echo \"hello from $POD_NAME in $(pwd)\"; echo oops >&2; exit 3",
    );
    config.working_dir = Some("/tmp".into());
    let id = run(&runtime, "web", config).await;
    let status = wait_for(&runtime, &id, exited).await;
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.reason, "Error");
    assert!(status.finished_at >= status.started_at);
    let mut lines = wait_for_lines(&runtime, &id, 2).await;
    lines.sort();
    assert_eq!(
        lines,
        [
            (LogStream::Stdout, "hello from web in /tmp".to_owned()),
            (LogStream::Stderr, "oops".to_owned()),
        ]
    );
    // Only the environment given: nothing of the test's own leaks in.
    let id = run(
        &runtime,
        "env",
        container("env", "echo \"[$HOME]\"; exit 0"),
    )
    .await;
    assert_eq!(wait_for(&runtime, &id, exited).await.reason, "Completed");
    assert_eq!(
        wait_for_lines(&runtime, &id, 1).await,
        [(LogStream::Stdout, "[]".to_owned())]
    );
}

#[tokio::test]
async fn stop_asks_with_sigterm_and_kills_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let polite = run(&runtime, "polite", container("polite", "exec sleep 30")).await;
    // Ignoring TERM in the shell carries over to the `sleep` it starts.
    let stubborn = run(
        &runtime,
        "stubborn",
        container("stubborn", "trap '' TERM; sleep 30; sleep 30"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    runtime
        .stop_container(&polite, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let status = runtime.container_status(&polite).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, Some(143))
    );

    let started = Instant::now();
    runtime
        .stop_container(&stubborn, Duration::from_millis(700))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let status = runtime.container_status(&stubborn).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, Some(137))
    );
    // Stopping again, or removing, is fine.
    runtime
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    runtime.remove_container(&stubborn).await.unwrap();
    assert!(
        runtime
            .container_status(&stubborn)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn a_process_killed_from_outside_is_seen_to_have_crashed() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut config = container("victim", "echo $$ > pid; exec sleep 30");
    config.working_dir = Some(work.path().to_owned());
    let id = run(&runtime, "victim", config).await;
    // The command's pid (the shell `exec`s into `sleep`), from its working directory.
    let pid_file = work.path().join("pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the container never wrote its pid"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The shell's `kill` builtin: no procps needed.
    let killed = std::process::Command::new("/bin/sh")
        .args(["-c", &format!("kill -KILL {pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_for(&runtime, &id, exited).await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (Some(137), "Error")
    );
}

#[tokio::test]
async fn exec_runs_with_the_container_environment() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let mut config = container("web", "exec sleep 30");
    config.working_dir = Some("/tmp".into());
    let id = run(&runtime, "web", config).await;
    let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let result = runtime
        .exec_sync(
            &id,
            &sh("echo $POD_NAME $(pwd); exit 4"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&result.stdout).as_ref(),
            result.exit_code
        ),
        ("web /tmp\n", 4)
    );
    let missing = runtime
        .exec_sync(&id, &["no-such-probe".to_owned()], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(missing.exit_code, 127);
    let slow = runtime
        .exec_sync(&id, &sh("sleep 5"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(slow, RuntimeError::Timeout { .. }), "{slow}");
    runtime
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        runtime
            .exec_sync(&id, &sh("true"), Duration::from_secs(1))
            .await,
        Err(RuntimeError::FailedPrecondition { .. })
    ));
}

#[tokio::test]
async fn bad_requests_name_the_field_or_object() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let config = sandbox("web");
    let sandbox_id = runtime.run_pod_sandbox(&config).await.unwrap();
    let mut no_command = container("web", "true");
    no_command.command.clear();
    assert!(matches!(
        runtime.create_container(&sandbox_id, &no_command, &config).await,
        Err(RuntimeError::InvalidArgument { field, .. }) if field == "command"
    ));
    let mut relative = container("web", "true");
    relative.working_dir = Some("tmp".into());
    assert!(matches!(
        runtime.create_container(&sandbox_id, &relative, &config).await,
        Err(RuntimeError::InvalidArgument { field, .. }) if field == "working_dir"
    ));
    assert!(
        runtime
            .create_container("nope", &container("web", "true"), &config)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A damaged record is refused, not overwritten.
    std::fs::write(root.path().join("containers/broken.json"), b"{not json").unwrap();
    let error = ProcessRuntime::open(root.path()).await.unwrap_err();
    assert!(error.to_string().contains("broken.json"), "{error}");
    assert!(Path::new(&root.path().join("containers/broken.json")).exists());
}

/// A node agent restart: the first runtime's tasks all end (its tokio runtime shuts down) while
/// its container keeps running; a second runtime over the same directory adopts it.
#[test]
fn a_restarted_runtime_adopts_the_containers_still_running() {
    let root = tempfile::tempdir().unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let (id, pid) = first.block_on(async {
        let runtime = ProcessRuntime::open(root.path()).await.unwrap();
        let id = run(
            &runtime,
            "ticker",
            container(
                "ticker",
                "trap 'echo bye; exit 0' TERM; while true; do echo tick; sleep 0.1; done",
            ),
        )
        .await;
        wait_for_lines(&runtime, &id, 2).await;
        let pid = runtime.container_status(&id).await.unwrap().pid;
        (id, pid)
    });
    first.shutdown_background();
    std::thread::sleep(Duration::from_millis(300));

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let runtime = ProcessRuntime::open(root.path()).await.unwrap();
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!((status.state, status.pid), (ContainerState::Running, pid));
        // Its output is picked up again: more ticks arrive after the adoption.
        let before = log_text(&runtime, &id).await.len();
        wait_for_lines(&runtime, &id, before + 3).await;
        runtime
            .stop_container(&id, Duration::from_secs(5))
            .await
            .unwrap();
        let status = runtime.container_status(&id).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code),
            (ContainerState::Exited, Some(0))
        );
        // What it printed on SIGTERM was captured too (the shell may also report the `sleep`
        // it was waiting for as "Terminated" on stderr, in either order).
        let lines = wait_for_lines(&runtime, &id, before + 4).await;
        assert!(
            lines.contains(&(LogStream::Stdout, "bye".to_owned())),
            "{lines:?}"
        );
    });
}
