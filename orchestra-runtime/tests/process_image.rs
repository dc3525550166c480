//! The process runtime running containers from imported images, with real processes: a busybox
//! image built here from the host's static `/bin/busybox`, imported through the runtime's
//! `ImageService`, run chrooted into an overlay of its own per container (writes kept apart,
//! `/proc`, `/dev` and the host's `/etc/hosts` inside), unmounted when removed — by a reopened
//! runtime too; run from its files without a chroot; and a container whose image is not imported
//! running on the host. Each says which in its status annotations.
//!
//! The busybox image needs the host's static busybox (Debian's `busybox-static`) and the chroot
//! needs root: without them these tests fail if `CI=true`, and skip (saying why) otherwise.
#![cfg(feature = "process")]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestra_core::container_runtime::{
    ContainerConfig, ContainerMetadata, ContainerRuntime, ContainerState, ContainerStatus,
    IMAGE_ID_ANNOTATION, ImageService, LogOptions, PodSandboxConfig, PodSandboxMetadata,
    ROOTFS_ANNOTATION, ROOTFS_DETAIL_ANNOTATION, ROOTFS_HOST, ROOTFS_IMAGE, RuntimeError,
};
use orchestra_runtime::image::ImageStore;
use orchestra_runtime::process::{ProcessRuntime, ProcessRuntimeOptions};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

type TestResult = Result<(), Box<dyn Error>>;

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips the test outside CI with `why`; fails it in CI.
fn skip(why: &str) -> TestResult {
    if in_ci() {
        return Err(format!("CI=true, but {why}").into());
    }
    eprintln!("skipped: {why}");
    Ok(())
}

/// The host's static busybox (`ORCHESTRA_TEST_BUSYBOX` names another), if it has one.
fn host_busybox() -> Option<Vec<u8>> {
    let path = std::env::var_os("ORCHESTRA_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    let busybox = std::fs::read(path).ok()?;
    let dynamic = busybox
        .windows(8)
        .any(|window| window == b"/ld-linu" || window == b"ld-musl-");
    (!dynamic).then_some(busybox)
}

fn sha256(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// A busybox image as a `docker save` archive, tagged `busybox` (so
/// `docker.io/library/busybox:latest`): busybox and its applets in `/bin`, `nobody` in
/// `/etc/passwd` as the image's user, `/tmp`, and a file `/image-marker` at the root.
fn busybox_archive(busybox: &[u8], dir: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let mut layer = tar::Builder::new(Vec::new());
    for (path, mode) in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)] {
        layer.append_data(&mut header(EntryType::Directory, mode, 0), path, &[][..])?;
    }
    let files: [(&str, &[u8], u32); 4] = [
        ("bin/busybox", busybox, 0o755),
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
            0o644,
        ),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("image-marker", b"from the image\n", 0o644),
    ];
    for (path, data, mode) in files {
        let mut entry = header(EntryType::Regular, mode, data.len() as u64);
        layer.append_data(&mut entry, path, data)?;
    }
    for applet in ["sh", "cat", "ls", "id", "sleep", "test"] {
        let mut entry = header(EntryType::Symlink, 0o777, 0);
        layer.append_link(&mut entry, format!("bin/{applet}"), "busybox")?;
    }
    let layer = layer.into_inner()?;
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "User": "nobody"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    })
    .to_string();
    let config_name = format!(
        "{}.json",
        sha256(config.as_bytes()).trim_start_matches("sha256:")
    );
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["busybox"],
        "Layers": ["0/layer.tar"],
    }])
    .to_string();
    let mut archive = tar::Builder::new(Vec::new());
    let entries: [(&str, &[u8]); 3] = [
        (&config_name, config.as_bytes()),
        ("0/layer.tar", &layer),
        ("manifest.json", manifest.as_bytes()),
    ];
    for (path, data) in entries {
        let mut entry = header(EntryType::Regular, 0o644, data.len() as u64);
        archive.append_data(&mut entry, path, data)?;
    }
    let path = dir.join("busybox.tar");
    std::fs::write(&path, archive.into_inner()?)?;
    Ok(path)
}

/// A runtime's state directory, with whatever a failed test left mounted in it detached before
/// it is deleted (never deleting through a mount).
struct StateDir(tempfile::TempDir);

impl StateDir {
    fn new() -> std::io::Result<StateDir> {
        tempfile::tempdir().map(StateDir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        for point in mounts_under(self.0.path()).iter().rev() {
            let _ = rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The mount points at or under `dir`, as `/proc/self/mountinfo` lists them.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(&dir))
        .collect()
}

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

fn container(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        },
        image: image.to_owned(),
        command: command.iter().map(|part| (*part).to_owned()).collect(),
        ..ContainerConfig::default()
    }
}

/// Creates and starts `config` in a new sandbox; the container's id.
async fn run(runtime: &ProcessRuntime, config: &ContainerConfig) -> Result<String, RuntimeError> {
    let sandbox = sandbox(&config.metadata.name);
    let sandbox_id = runtime.run_pod_sandbox(&sandbox).await?;
    let id = runtime
        .create_container(&sandbox_id, config, &sandbox)
        .await?;
    runtime.start_container(&id).await?;
    Ok(id)
}

/// Polls the container until `done` holds (at most 10 s).
async fn wait_for(
    runtime: &ProcessRuntime,
    id: &str,
    done: impl Fn(&ContainerStatus) -> bool,
) -> Result<ContainerStatus, Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = runtime.container_status(id).await?;
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!("gave up waiting: {status:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The container's log lines, once the last one is `last` (at most 10 s).
async fn lines_until(
    runtime: &ProcessRuntime,
    id: &str,
    last: &str,
) -> Result<Vec<String>, Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut lines = Vec::new();
        for line in runtime
            .container_logs(id, &LogOptions::default())
            .await?
            .collect::<Vec<_>>()
            .await
        {
            lines.push(String::from_utf8_lossy(&line?.content).into_owned());
        }
        if lines.last().is_some_and(|line| line == last) {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            return Err(format!("gave up waiting for {last:?}: {lines:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn annotation<'a>(status: &'a ContainerStatus, key: &str) -> &'a str {
    status.annotations.get(key).map_or("", String::as_str)
}

#[tokio::test]
async fn an_imported_image_runs_chrooted_in_an_overlay_of_its_own_and_is_unmounted_on_removal()
-> TestResult {
    let Some(busybox) = host_busybox() else {
        return skip("no static /bin/busybox on this host (Debian: busybox-static)");
    };
    if !is_root() {
        return skip("running chrooted needs root");
    }
    let state = StateDir::new()?;
    let runtime = ProcessRuntime::open(state.path()).await?;
    let archive = busybox_archive(&busybox, state.path())?;
    let imported = runtime.import_image(&archive).await?;
    assert_eq!(imported[0].repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(runtime.list_images().await?, imported);
    let image_id = imported[0].id.clone();
    let shared = runtime.images().rootfs("busybox").ok_or("no rootfs")?;

    // The image's process as the container overrides it, in the image's root directory, as
    // the image's user, in its working directory.
    let mut web = container(
        "web",
        "busybox",
        &[
            "sh",
            "-c",
            "echo hello > /tmp/x; cat /tmp/x; ls /; id -u; pwd; \
             test -s /etc/hosts && echo hosts; test -e /proc/self/stat && echo proc; \
             echo > /dev/null && echo devnull; echo done",
        ],
    );
    web.working_dir = Some("/tmp".into());
    let web_id = run(&runtime, &web).await?;
    let status = wait_for(&runtime, &web_id, |s| s.state == ContainerState::Exited).await?;
    let lines = lines_until(&runtime, &web_id, "done").await?;
    assert_eq!(status.exit_code, Some(0), "{lines:?} {status:?}");
    assert_eq!(lines[0], "hello");
    for entry in ["bin", "dev", "etc", "image-marker", "proc", "tmp"] {
        assert!(lines.iter().any(|line| line == entry), "{entry}: {lines:?}");
    }
    // Not the host's root.
    for host_only in ["work", "usr", "lib", "var"] {
        assert!(!lines.iter().any(|line| line == host_only), "{lines:?}");
    }
    for expected in ["65534", "/tmp", "hosts", "proc", "devnull"] {
        assert!(
            lines.iter().any(|line| line == expected),
            "{expected}: {lines:?}"
        );
    }

    // Which it is, for the node agent's events.
    assert_eq!(annotation(&status, ROOTFS_ANNOTATION), ROOTFS_IMAGE);
    assert_eq!(annotation(&status, IMAGE_ID_ANNOTATION), image_id);
    assert_eq!(
        annotation(&status, ROOTFS_DETAIL_ANNOTATION),
        "from image docker.io/library/busybox:latest's root filesystem, chrooted"
    );
    assert_eq!(status.image, "docker.io/library/busybox:latest");
    assert_eq!(status.message, "");

    // Its write stayed in its own upper layer.
    assert!(!shared.join("tmp/x").exists());
    let web_directory = state.path().join("containers").join(&web_id);
    assert!(web_directory.join("rootfs/upper/tmp/x").is_file());
    assert!(!mounts_under(&web_directory).is_empty());

    // A second container of the image does not see it; it runs on (an exec runs inside too).
    let watcher = container(
        "watcher",
        "busybox",
        &[
            "sh",
            "-c",
            "test -e /tmp/x && echo seen || echo unseen; exec sleep 60",
        ],
    );
    let watcher_id = run(&runtime, &watcher).await?;
    assert_eq!(
        lines_until(&runtime, &watcher_id, "unseen").await?,
        ["unseen"]
    );
    let exec = runtime
        .exec_sync(
            &watcher_id,
            &["cat".to_owned(), "/image-marker".to_owned()],
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(exec.stdout, "from the image\n");
    assert_eq!(exec.exit_code, 0);

    // An image that containers run from stays until they are removed.
    assert!(matches!(
        runtime.remove_image("busybox").await,
        Err(RuntimeError::FailedPrecondition { .. })
    ));

    // Removal unmounts and deletes the overlay.
    runtime.remove_container(&web_id).await?;
    assert_eq!(mounts_under(&web_directory), Vec::<PathBuf>::new());
    assert!(!web_directory.exists());
    assert!(shared.join("bin/busybox").is_file());

    // A reopened runtime adopts the running one, and removing it unmounts what the first
    // runtime mounted.
    let watcher_directory = state.path().join("containers").join(&watcher_id);
    assert!(!mounts_under(&watcher_directory).is_empty());
    drop(runtime);
    let reopened = ProcessRuntime::open(state.path()).await?;
    let status = reopened.container_status(&watcher_id).await?;
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!(annotation(&status, ROOTFS_ANNOTATION), ROOTFS_IMAGE);
    reopened.remove_container(&watcher_id).await?;
    assert_eq!(mounts_under(state.path()), Vec::<PathBuf>::new());
    assert!(!watcher_directory.exists());

    reopened.remove_image("busybox").await?;
    assert!(reopened.list_images().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn without_an_overlay_a_container_is_chrooted_into_the_shared_root_filesystem() -> TestResult
{
    let Some(busybox) = host_busybox() else {
        return skip("no static /bin/busybox on this host (Debian: busybox-static)");
    };
    if !is_root() {
        return skip("running chrooted needs root");
    }
    let state = StateDir::new()?;
    // overlayfs options cannot name a lower directory with a comma in its path.
    let store = ImageStore::open(state.path().join("images,shared"))?;
    let options = ProcessRuntimeOptions::default().with_image_store(store);
    let runtime = ProcessRuntime::open_with_options(state.path(), options).await?;
    runtime
        .import_image(&busybox_archive(&busybox, state.path())?)
        .await?;
    let mut reader = container("reader", "busybox", &["sh", "-c", "cat /image-marker; pwd"]);
    reader.working_dir = Some("/tmp".into());
    let id = run(&runtime, &reader).await?;
    let status = wait_for(&runtime, &id, |s| s.state == ContainerState::Exited).await?;
    assert_eq!(
        lines_until(&runtime, &id, "/tmp").await?,
        ["from the image", "/tmp"]
    );
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(annotation(&status, ROOTFS_ANNOTATION), ROOTFS_IMAGE);
    assert_eq!(
        annotation(&status, ROOTFS_DETAIL_ANNOTATION),
        "from image docker.io/library/busybox:latest's root filesystem, chrooted into the \
         image's shared copy (no overlay)"
    );
    assert!(
        status.message.contains("the overlay could not be mounted"),
        "{status:?}"
    );
    assert_eq!(mounts_under(state.path()), Vec::<PathBuf>::new());
    runtime.remove_container(&id).await?;
    assert!(runtime.images().rootfs("busybox").is_some());
    Ok(())
}

#[tokio::test]
async fn an_image_runs_from_its_files_without_a_chroot() -> TestResult {
    let Some(busybox) = host_busybox() else {
        return skip("no static /bin/busybox on this host (Debian: busybox-static)");
    };
    let state = StateDir::new()?;
    // As when the runtime does not run as root.
    let options = ProcessRuntimeOptions::default().without_chroot();
    let runtime = ProcessRuntime::open_with_options(state.path(), options).await?;
    runtime
        .import_image(&busybox_archive(&busybox, state.path())?)
        .await?;
    let rootfs = runtime.images().rootfs("busybox").ok_or("no rootfs")?;

    let mut hello = container("hello", "busybox:latest", &[]);
    hello.args = vec!["-c".to_owned(), "echo hello; pwd".to_owned()];
    hello.command = vec!["/bin/sh".to_owned()];
    hello.working_dir = Some("/tmp".into());
    let id = run(&runtime, &hello).await?;
    let status = wait_for(&runtime, &id, |s| s.state == ContainerState::Exited).await?;
    let working_dir = rootfs.join("tmp").display().to_string();
    let lines = lines_until(&runtime, &id, &working_dir).await?;
    assert_eq!(lines, ["hello".to_owned(), working_dir]);
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(annotation(&status, ROOTFS_ANNOTATION), ROOTFS_IMAGE);
    assert_eq!(
        annotation(&status, ROOTFS_DETAIL_ANNOTATION),
        "from image docker.io/library/busybox:latest's root filesystem, not chrooted \
         (chroot is turned off)"
    );
    assert!(status.message.starts_with("not chrooted"), "{status:?}");
    runtime.remove_container(&id).await?;
    assert_eq!(mounts_under(state.path()), Vec::<PathBuf>::new());
    Ok(())
}

#[tokio::test]
async fn a_container_whose_image_is_not_imported_runs_on_the_host() -> TestResult {
    let state = StateDir::new()?;
    let runtime = ProcessRuntime::open(state.path()).await?;
    let id = run(
        &runtime,
        &container("greeter", "not-imported:1", &["/bin/echo", "hi"]),
    )
    .await?;
    let status = wait_for(&runtime, &id, |s| s.state == ContainerState::Exited).await?;
    assert_eq!(lines_until(&runtime, &id, "hi").await?, ["hi"]);
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(status.image, "not-imported:1");
    assert_eq!(annotation(&status, ROOTFS_ANNOTATION), ROOTFS_HOST);
    assert_eq!(
        annotation(&status, ROOTFS_DETAIL_ANNOTATION),
        "on the host filesystem: image not-imported:1 is not in the node's image store"
    );
    assert!(!status.annotations.contains_key(IMAGE_ID_ANNOTATION));
    runtime.remove_container(&id).await?;

    // Without the image's entrypoint, the command is the container's to give.
    let sandbox = sandbox("empty");
    let sandbox_id = runtime.run_pod_sandbox(&sandbox).await?;
    let created = runtime
        .create_container(
            &sandbox_id,
            &container("empty", "not-imported:1", &[]),
            &sandbox,
        )
        .await;
    match created {
        Err(RuntimeError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "command");
            assert!(reason.contains("not in the node's image store"), "{reason}");
        }
        other => return Err(format!("{other:?}").into()),
    }
    Ok(())
}
