//! The process runtime with real processes: commands, environment, output, exit codes, graceful
//! stop, exec, and adoption by a restarted runtime.
#![cfg(feature = "process")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use orchestra_core::container_runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, LogStream, RuntimeError,
};
use orchestra_runtime::process::ProcessRuntime;
use support::{
    exited, log_lines, run, run_to_exit, sandbox, shell, wait_for_log, wait_for_status, wait_until,
};

/// How long a container is waited for.
const WITHIN: Duration = Duration::from_secs(10);

/// A container `name` running `script` on the host, its name in `POD_NAME`.
fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        env: vec![("POD_NAME".to_owned(), name.to_owned())],
        ..shell(name, script)
    }
}

/// Waits until the log has `count` lines.
async fn wait_for_lines(
    runtime: &ProcessRuntime,
    id: &str,
    count: usize,
) -> Vec<(LogStream, String)> {
    wait_for_log(runtime, id, WITHIN, |lines| lines.len() >= count)
        .await
        .unwrap()
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
    let (id, status) = run_to_exit(&runtime, &config, WITHIN).await.unwrap();
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
    let (id, status) = run_to_exit(
        &runtime,
        &container("env", "echo \"[$HOME]\"; exit 0"),
        WITHIN,
    )
    .await
    .unwrap();
    assert_eq!(status.reason, "Completed");
    assert_eq!(
        wait_for_lines(&runtime, &id, 1).await,
        [(LogStream::Stdout, "[]".to_owned())]
    );
}

#[tokio::test]
async fn stop_asks_with_sigterm_and_kills_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let runtime = ProcessRuntime::open(root.path()).await.unwrap();
    let polite = run(&runtime, &container("polite", "exec sleep 30"))
        .await
        .unwrap();
    // Ignoring TERM in the shell carries over to the `sleep` it starts.
    let stubborn = run(
        &runtime,
        &container("stubborn", "trap '' TERM; sleep 30; sleep 30"),
    )
    .await
    .unwrap();
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
    let id = run(&runtime, &config).await.unwrap();
    // The command's pid (the shell `exec`s into `sleep`), from its working directory.
    let pid_file = work.path().join("pid");
    wait_until(WITHIN, "the container never wrote its pid", || {
        pid_file.exists().then_some(())
    })
    .await
    .unwrap();
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
    let status = wait_for_status(&runtime, &id, WITHIN, exited)
        .await
        .unwrap();
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
    let id = run(&runtime, &config).await.unwrap();
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
            &container(
                "ticker",
                "trap 'echo bye; exit 0' TERM; while true; do echo tick; sleep 0.1; done",
            ),
        )
        .await
        .unwrap();
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
        let before = log_lines(&runtime, &id).await.unwrap().len();
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
