//! What the runtime's integration tests share: skipping what this host cannot run (outside CI),
//! temporary directories that clean up after mounts and locked directories, tarballs and
//! images written with the `tar` crate (a busybox image from the host's), and the process
//! runtime's sandboxes, containers and waits.
//!
//! Each test file uses part of it.
#![allow(dead_code)]

use std::error::Error;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use orchestra_core::container_runtime::{
    ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata,
};
#[cfg(feature = "process")]
use orchestra_core::container_runtime::{
    ContainerRuntime, ContainerState, ContainerStatus, LogOptions, LogStream, RuntimeError,
};
#[cfg(feature = "process")]
use orchestra_runtime::process::ProcessRuntime;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

pub(crate) type TestResult = Result<(), Box<dyn Error>>;

/// Whether the tests run in CI (`CI=true`), where whatever a test needs must be there.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips the test outside CI with `why`; fails it in CI.
pub(crate) fn skip(why: &str) -> TestResult {
    if in_ci() {
        return Err(format!("CI=true, but {why}").into());
    }
    eprintln!("skipped: {why}");
    Ok(())
}

/// A temporary directory, deleted even when a failed test left something mounted in it (detached
/// first: never deleting through a mount) or left directories their owner cannot read (as the
/// root filesystems a store not running as root unpacks may).
pub(crate) struct TestDir(tempfile::TempDir);

impl TestDir {
    pub(crate) fn new() -> std::io::Result<TestDir> {
        tempfile::tempdir().map(TestDir)
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Only the process runtime mounts.
        #[cfg(feature = "process")]
        for point in mounts_under(self.path()).iter().rev() {
            let _ = rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH);
        }
        // Not into a mount that is left: only the directory's own filesystem.
        let Ok(device) = fs::metadata(self.path()).map(|metadata| metadata.dev()) else {
            return;
        };
        let mut dirs = vec![self.path().to_owned()];
        while let Some(dir) = dirs.pop() {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let metadata = entry.metadata();
                if metadata.is_ok_and(|metadata| metadata.is_dir() && metadata.dev() == device) {
                    dirs.push(entry.path());
                }
            }
        }
    }
}

/// The mount points at or under `dir`, as `/proc/self/mountinfo` lists them.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(&dir))
        .collect()
}

pub(crate) fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

pub(crate) fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

/// Writes `data` to `dir/name`; its path.
pub(crate) fn write(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf, Box<dyn Error>> {
    let path = dir.join(name);
    fs::write(&path, data)?;
    Ok(path)
}

/// A tar being written, with entries of every kind, including ones the `tar` crate would not
/// write by their path (`..`, absolute paths).
pub(crate) struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub(crate) fn new() -> Tar {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
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

    pub(crate) fn dir(mut self, path: &str, mode: u32) -> Result<Tar, Box<dyn Error>> {
        let mut header = Tar::header(EntryType::Directory, mode, 0);
        self.builder.append_data(&mut header, path, &[][..])?;
        Ok(self)
    }

    pub(crate) fn file(self, path: &str, data: &[u8]) -> Result<Tar, Box<dyn Error>> {
        self.file_with(path, data, 0o644, 0)
    }

    pub(crate) fn file_with(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: u64,
    ) -> Result<Tar, Box<dyn Error>> {
        let mut header = Tar::header(EntryType::Regular, mode, data.len() as u64);
        header.set_uid(owner);
        header.set_gid(owner);
        self.builder.append_data(&mut header, path, data)?;
        Ok(self)
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Result<Tar, Box<dyn Error>> {
        let mut header = Tar::header(EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target)?;
        Ok(self)
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Result<Tar, Box<dyn Error>> {
        let mut header = Tar::header(EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut header, path, target)?;
        Ok(self)
    }

    /// An entry whose name and link name are written as given, unchecked.
    pub(crate) fn raw(
        mut self,
        kind: EntryType,
        name: &str,
        link: &str,
        data: &[u8],
    ) -> Result<Tar, Box<dyn Error>> {
        if name.len() > 100 || link.len() > 100 {
            return Err(format!("{name:?} or {link:?} is too long for a raw entry").into());
        }
        let mut header = Tar::header(kind, 0o644, data.len() as u64);
        let gnu = header.as_gnu_mut().ok_or("not a GNU header")?;
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname = [0; 100];
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        self.builder.append(&header, data)?;
        Ok(self)
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, Box<dyn Error>> {
        Ok(self.builder.into_inner()?)
    }
}

/// The OCI name of this machine's architecture.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image's configuration, with the diff ids of its (uncompressed) layers.
pub(crate) fn config_json(layers: &[&[u8]], runtime: serde_json::Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|layer| sha256(layer)).collect();
    let config = json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    config.to_string().into_bytes()
}

/// A `docker save` archive (the format of Docker before 25: `<hex>.json`, `<n>/layer.tar`),
/// `manifest.json` last.
pub(crate) fn docker_save(
    config: &[u8],
    layers: &[Vec<u8>],
    repo_tags: &[&str],
) -> Result<Vec<u8>, Box<dyn Error>> {
    let config_name = format!("{}.json", hex(&sha256(config)));
    let mut tar = Tar::new().file(&config_name, config)?;
    let mut layer_names = Vec::new();
    for (position, layer) in layers.iter().enumerate() {
        let name = format!("{position}/layer.tar");
        tar = tar.dir(&position.to_string(), 0o755)?.file(&name, layer)?;
        layer_names.push(name);
    }
    let manifest =
        json!([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]).to_string();
    tar.file("manifest.json", manifest.as_bytes())?.finish()
}

/// The host's busybox (`ORCHESTRA_TEST_BUSYBOX` names another), if it has one.
pub(crate) fn host_busybox() -> Option<Vec<u8>> {
    let path = std::env::var_os("ORCHESTRA_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    fs::read(path).ok()
}

/// Whether `binary` names no dynamic loader: it runs chrooted where no libraries are.
pub(crate) fn is_static(binary: &[u8]) -> bool {
    !binary
        .windows(8)
        .any(|window| window == b"/ld-linu" || window == b"ld-musl-")
}

/// A busybox image as a `docker save` archive `dir/busybox.tar` (its layer gzipped), tagged
/// `busybox` (so `docker.io/library/busybox:latest`): `busybox` and its applets in `/bin` (`echo`
/// linked by an absolute path), `nobody` in `/etc/passwd` as the image's user, `/tmp`, and a
/// file `/image-marker` at the root.
pub(crate) fn busybox_archive(busybox: &[u8], dir: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let mut layer = Tar::new()
        .dir("bin", 0o755)?
        .file_with("bin/busybox", busybox, 0o755, 0)?
        .symlink("bin/echo", "/bin/busybox")?;
    for applet in ["sh", "cat", "ls", "id", "sleep", "test"] {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    let layer = layer
        .dir("etc", 0o755)?
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        )?
        .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")?
        .dir("tmp", 0o1777)?
        .file("image-marker", b"from the image\n")?
        .finish()?;
    let config = config_json(
        &[&layer],
        json!({"Cmd": ["sh"], "Env": ["PATH=/bin"], "User": "nobody"}),
    );
    let archive = docker_save(&config, &[gzip(&layer)?], &["busybox"])?;
    write(dir, "busybox.tar", &archive)
}

pub(crate) fn sandbox(name: &str) -> PodSandboxConfig {
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

/// A container `name` of `image` running `command` (none: the image's).
pub(crate) fn container(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
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

/// A container `name` running `script` with the host's `/bin/sh` (image `host`).
pub(crate) fn shell(name: &str, script: &str) -> ContainerConfig {
    container(name, "host", &["/bin/sh", "-c", script])
}

/// What a check of [`eventually`] saw: the value waited for, or (`Err`) what there was instead.
pub(crate) type Seen<T> = Result<T, String>;

/// Runs `check` every 20 ms until it sees its value, for at most `within`: then an error with
/// what it last saw instead. An error of `check` itself ends the wait at once.
pub(crate) async fn eventually<T>(
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<Seen<T>, Box<dyn Error>>,
) -> Result<T, Box<dyn Error>> {
    let deadline = Instant::now() + within;
    loop {
        match check().await? {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => {
                return Err(format!("gave up waiting: {seen}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Polls `check` (as [`eventually`]) until it gives a value; `missing` says what is not there yet.
pub(crate) async fn wait_until<T>(
    within: Duration,
    missing: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Box<dyn Error>> {
    eventually(within, async || {
        Ok(check().ok_or_else(|| missing.to_owned()))
    })
    .await
}

/// Creates and starts `config` in a new sandbox named after it; the container's id.
#[cfg(feature = "process")]
pub(crate) async fn run(
    runtime: &ProcessRuntime,
    config: &ContainerConfig,
) -> Result<String, RuntimeError> {
    let sandbox = sandbox(&config.metadata.name);
    let sandbox_id = runtime.run_pod_sandbox(&sandbox).await?;
    let id = runtime
        .create_container(&sandbox_id, config, &sandbox)
        .await?;
    runtime.start_container(&id).await?;
    Ok(id)
}

#[cfg(feature = "process")]
pub(crate) fn exited(status: &ContainerStatus) -> bool {
    status.state == ContainerState::Exited
}

/// Polls the container's status until `done` holds (at most `within`).
#[cfg(feature = "process")]
pub(crate) async fn wait_for_status(
    runtime: &ProcessRuntime,
    id: &str,
    within: Duration,
    done: impl Fn(&ContainerStatus) -> bool,
) -> Result<ContainerStatus, Box<dyn Error>> {
    eventually(within, async || {
        let status = runtime.container_status(id).await?;
        Ok(if done(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        })
    })
    .await
}

/// Runs `config` (as [`run`]) and waits until it has exited (at most `within`): its id and status.
#[cfg(feature = "process")]
pub(crate) async fn run_to_exit(
    runtime: &ProcessRuntime,
    config: &ContainerConfig,
    within: Duration,
) -> Result<(String, ContainerStatus), Box<dyn Error>> {
    let id = run(runtime, config).await?;
    let status = wait_for_status(runtime, &id, within, exited).await?;
    Ok((id, status))
}

/// The container's log: each line's stream and text.
#[cfg(feature = "process")]
pub(crate) async fn log_lines(
    runtime: &ProcessRuntime,
    id: &str,
) -> Result<Vec<(LogStream, String)>, Box<dyn Error>> {
    use futures_util::StreamExt as _;

    let mut lines = Vec::new();
    for line in runtime
        .container_logs(id, &LogOptions::default())
        .await?
        .collect::<Vec<_>>()
        .await
    {
        let line = line?;
        lines.push((
            line.stream,
            String::from_utf8_lossy(&line.content).into_owned(),
        ));
    }
    Ok(lines)
}

/// Polls the container's log until `done` holds for its lines (at most `within`).
#[cfg(feature = "process")]
pub(crate) async fn wait_for_log(
    runtime: &ProcessRuntime,
    id: &str,
    within: Duration,
    done: impl Fn(&[(LogStream, String)]) -> bool,
) -> Result<Vec<(LogStream, String)>, Box<dyn Error>> {
    eventually(within, async || {
        let lines = log_lines(runtime, id).await?;
        Ok(if done(&lines) {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        })
    })
    .await
}
