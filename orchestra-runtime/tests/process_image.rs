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

mod support;

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use orchestra_core::container_runtime::{
    ContainerRuntime, ContainerState, ContainerStatus, IMAGE_ID_ANNOTATION, ImageService,
    ROOTFS_ANNOTATION, ROOTFS_DETAIL_ANNOTATION, ROOTFS_HOST, ROOTFS_IMAGE, RuntimeError,
};
use orchestra_runtime::image::ImageStore;
use orchestra_runtime::process::{ProcessRuntime, ProcessRuntimeOptions};
use support::{
    TestDir, TestResult, busybox_archive, container, host_busybox, is_root, is_static,
    mounts_under, run, run_to_exit, sandbox, skip, wait_for_log,
};

/// How long a container is waited for.
const WITHIN: Duration = Duration::from_secs(10);

const NO_BUSYBOX: &str = "no static /bin/busybox on this host (Debian: busybox-static)";

/// The host's busybox, if it is static (it runs chrooted).
fn static_busybox() -> Option<Vec<u8>> {
    host_busybox().filter(|busybox| is_static(busybox))
}

/// The container's log lines, once the last one is `last`.
async fn lines_until(
    runtime: &ProcessRuntime,
    id: &str,
    last: &str,
) -> Result<Vec<String>, Box<dyn Error>> {
    let lines = wait_for_log(runtime, id, WITHIN, |lines| {
        lines.last().is_some_and(|(_, line)| line == last)
    })
    .await?;
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

fn annotation<'a>(status: &'a ContainerStatus, key: &str) -> &'a str {
    status.annotations.get(key).map_or("", String::as_str)
}

#[tokio::test]
async fn an_imported_image_runs_chrooted_in_an_overlay_of_its_own_and_is_unmounted_on_removal()
-> TestResult {
    let Some(busybox) = static_busybox() else {
        return skip(NO_BUSYBOX);
    };
    if !is_root() {
        return skip("running chrooted needs root");
    }
    let state = TestDir::new()?;
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
    let (web_id, status) = run_to_exit(&runtime, &web, WITHIN).await?;
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
    let Some(busybox) = static_busybox() else {
        return skip(NO_BUSYBOX);
    };
    if !is_root() {
        return skip("running chrooted needs root");
    }
    let state = TestDir::new()?;
    // overlayfs options cannot name a lower directory with a comma in its path.
    let store = ImageStore::open(state.path().join("images,shared"))?;
    let options = ProcessRuntimeOptions::default().with_image_store(store);
    let runtime = ProcessRuntime::open_with_options(state.path(), options).await?;
    runtime
        .import_image(&busybox_archive(&busybox, state.path())?)
        .await?;
    let mut reader = container("reader", "busybox", &["sh", "-c", "cat /image-marker; pwd"]);
    reader.working_dir = Some("/tmp".into());
    let (id, status) = run_to_exit(&runtime, &reader, WITHIN).await?;
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
    let Some(busybox) = static_busybox() else {
        return skip(NO_BUSYBOX);
    };
    let state = TestDir::new()?;
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
    let (id, status) = run_to_exit(&runtime, &hello, WITHIN).await?;
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
    let state = TestDir::new()?;
    let runtime = ProcessRuntime::open(state.path()).await?;
    let greeter = container("greeter", "not-imported:1", &["/bin/echo", "hi"]);
    let (id, status) = run_to_exit(&runtime, &greeter, WITHIN).await?;
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
