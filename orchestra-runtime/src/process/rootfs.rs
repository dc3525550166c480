//! Where a container's process finds its files: its image's root filesystem, or the host's.
//!
//! A container whose image is in the node's image store runs the image's process
//! ([`ImageConfig::process`](crate::image::ImageConfig::process): the container's command, args,
//! env and workingDir over the image's entrypoint, cmd, env and working directory) from the
//! image's unpacked root filesystem:
//!
//! - **As root**, chrooted into a writable view of its own: an overlay mount whose lower layer is
//!   the image's root filesystem (shared by the image's containers) and whose upper layer and work
//!   directory are the container's (`containers/<id>/rootfs/{upper,work,merged}` in the runtime's
//!   state directory). When it starts, a fresh `proc` is mounted on its `/proc`, a `tmpfs` on its
//!   `/dev` with the host's `null`, `zero`, `full`, `random` and `urandom` bound in (and the
//!   `fd`, `stdin`, `stdout` and `stderr` links), the host's `/etc/hosts` and `/etc/resolv.conf`
//!   are copied into its `/etc`, and its working directory is made if the image lacks it. The
//!   process is started by util-linux's `setpriv` (the group and supplementary groups of the
//!   image's user) and `unshare --root --wd --setuid` (the chroot, the working directory inside
//!   it, the user): no namespace is made, so like rkt's fly stage the container shares the host's
//!   network, processes and mount table. If the overlay cannot be mounted, the container is
//!   chrooted into the image's shared root filesystem itself with nothing mounted in it (no
//!   `/proc`, no `/dev` but what the image holds): nothing keeps its writes from reaching the
//!   image and its other containers, and its status message says so.
//! - **Not as root** (no chroot possible), the command runs with the host's root directory from
//!   the image's files, as the runtime's user: its program is resolved in the root filesystem
//!   (`/bin/x` is `<rootfs>/bin/x`, a bare name is looked up in the image's `PATH` there,
//!   symbolic links are followed as they would be inside), and it runs in
//!   `<rootfs>/<workingDir>`. What the program opens by absolute path, the programs it starts by
//!   name and the libraries a dynamically linked one loads are the host's. Its status message
//!   says so.
//!
//! Any other container (its image not in the store) runs its command on the host's filesystem,
//! as before images could be imported.
//!
//! The mounts are made in the host's mount namespace, under the container's state directory.
//! [`release`] unmounts whatever `/proc/self/mountinfo` lists there — so a restarted runtime,
//! which never made them, still finds them — and the directory is only deleted once nothing is
//! mounted in it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use orchestra_core::container_runtime::{
    IMAGE_ID_ANNOTATION, Labels, ROOTFS_ANNOTATION, ROOTFS_DETAIL_ANNOTATION, ROOTFS_HOST,
    ROOTFS_IMAGE,
};
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};

use super::supervise::DEFAULT_PATH;

/// Where the tools that start a chrooted container are looked for.
const TOOL_DIRECTORIES: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The host's devices a chrooted container gets in its `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// The links of a chrooted container's `/dev`.
const DEVICE_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The most symbolic links followed resolving one path in a root filesystem (Linux's limit).
const MAX_LINKS: usize = 40;

/// The host files copied into a chrooted container's `/etc`.
const HOST_FILES: [&str; 2] = ["hosts", "resolv.conf"];

/// Where a container's process finds its files, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Filesystem {
    /// The host's: the image is not in the node's image store (`reason` says so).
    Host {
        /// Why, for people (empty in records written before images could be run).
        reason: String,
    },
    /// The image's root filesystem.
    Image(ImageRoot),
}

impl Default for Filesystem {
    /// On the host, as every container of a runtime that predates images.
    fn default() -> Filesystem {
        Filesystem::Host {
            reason: String::new(),
        }
    }
}

/// A container run from its image's root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRoot {
    /// The image's normalised reference (`docker.io/library/busybox:latest`), or its id when
    /// the container named it by id and it has no tag.
    pub(crate) reference: String,
    /// The image's id (`sha256:...`).
    pub(crate) image_id: String,
    /// The image's root filesystem in the store, shared by its containers.
    pub(crate) rootfs: PathBuf,
    /// How it is chrooted, when it is (the runtime runs as root, and chroots).
    pub(crate) chroot: Option<Chroot>,
    /// Why it is not chrooted, when it is not.
    #[serde(default)]
    pub(crate) not_chrooted: String,
}

/// How a container runs chrooted (the runtime runs as root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chroot {
    /// The user id it runs as.
    pub(crate) uid: u32,
    /// The group id it runs as.
    pub(crate) gid: u32,
    /// Its supplementary groups.
    pub(crate) groups: Vec<u32>,
    /// util-linux's `setpriv`.
    pub(crate) setpriv: PathBuf,
    /// util-linux's `unshare`.
    pub(crate) unshare: PathBuf,
    /// The directory it is chrooted into, once started: the overlay's merged directory, or the
    /// image's shared root filesystem.
    pub(crate) root: Option<PathBuf>,
    /// Why it was chrooted into the image's shared root filesystem (the overlay could not be
    /// mounted), if it was.
    pub(crate) shared: Option<String>,
}

impl Filesystem {
    /// Adds the annotations that say where the container runs ([`ROOTFS_ANNOTATION`] and the
    /// others) to `annotations`.
    pub(crate) fn annotate(&self, annotations: &mut Labels) {
        let kind = match self {
            Filesystem::Host { .. } => ROOTFS_HOST,
            Filesystem::Image(image) => {
                annotations.insert(IMAGE_ID_ANNOTATION.to_owned(), image.image_id.clone());
                ROOTFS_IMAGE
            }
        };
        annotations.insert(ROOTFS_ANNOTATION.to_owned(), kind.to_owned());
        annotations.insert(ROOTFS_DETAIL_ANNOTATION.to_owned(), self.detail());
    }

    /// Where and how the container runs, as a phrase completing "Started container web (…)".
    pub(crate) fn detail(&self) -> String {
        match self {
            Filesystem::Host { reason } if reason.is_empty() => "on the host filesystem".to_owned(),
            Filesystem::Host { reason } => format!("on the host filesystem: {reason}"),
            Filesystem::Image(image) => {
                let how = match &image.chroot {
                    Some(Chroot {
                        shared: Some(_), ..
                    }) => "chrooted into the image's shared copy (no overlay)".to_owned(),
                    Some(_) => "chrooted".to_owned(),
                    None => format!("not chrooted ({})", image.not_chrooted),
                };
                format!("from image {}'s root filesystem, {how}", image.reference)
            }
        }
    }
}

/// Why a container of an image is not chrooted when the runtime is not root.
pub(crate) const NOT_ROOT: &str = "the runtime does not run as root";

/// Why a container of an image is not chrooted when the runtime was told not to.
pub(crate) const CHROOT_TURNED_OFF: &str = "chroot is turned off";

/// What the status message says of a container run from its image without a chroot (`why`).
pub(crate) fn not_chrooted_note(why: &str) -> String {
    format!(
        "not chrooted ({why}): the command runs from the image's files with the host's root \
         directory, as the runtime's user"
    )
}

/// What the status message says of a container chrooted into its image's shared root
/// filesystem because the overlay could not be mounted (`why`).
pub(crate) fn shared_note(why: &str) -> String {
    format!(
        "chrooted into the image's shared root filesystem, without /proc or /dev, where its \
         writes reach every container of the image: the overlay could not be mounted: {why}"
    )
}

/// util-linux's `name` (`setpriv`, `unshare`), looked for in the usual directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRECTORIES
        .iter()
        .map(|directory| Path::new(directory).join(name))
        .find(|path| {
            fs::metadata(path).is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            })
        })
}

/// How to run a command in a container: the host command line and working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    /// The program and its arguments, as the host runs them.
    pub(crate) argv: Vec<OsString>,
    /// The host working directory, if it matters.
    pub(crate) working_dir: Option<PathBuf>,
}

/// How to run `argv` in a container on `filesystem`, in `working_dir` (inside the image for a
/// container of an image), with `env`.
///
/// # Errors
///
/// A chrooted container that has not been given its root yet (it has not started).
pub(crate) fn launch(
    filesystem: &Filesystem,
    argv: &[String],
    working_dir: Option<&Path>,
    env: &[(String, String)],
) -> Result<Launch, String> {
    let image = match filesystem {
        Filesystem::Host { .. } => {
            return Ok(Launch {
                argv: argv.iter().map(OsString::from).collect(),
                working_dir: working_dir.map(Path::to_owned),
            });
        }
        Filesystem::Image(image) => image,
    };
    let inside = working_dir.unwrap_or(Path::new("/"));
    let Some(chroot) = &image.chroot else {
        let working_dir = resolve_in_root(&image.rootfs, inside, false);
        let mut host_argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        if let Some(program) = argv.first() {
            host_argv[0] = resolve_program(&image.rootfs, program, inside, env).into_os_string();
        }
        return Ok(Launch {
            argv: host_argv,
            working_dir: Some(working_dir),
        });
    };
    let Some(root) = &chroot.root else {
        return Err("the container has no root directory yet: it has not started".to_owned());
    };
    let groups = if chroot.groups.is_empty() {
        OsString::from("--clear-groups")
    } else {
        let list: Vec<String> = chroot.groups.iter().map(u32::to_string).collect();
        OsString::from(format!("--groups={}", list.join(",")))
    };
    let mut host_argv = vec![
        chroot.setpriv.clone().into_os_string(),
        OsString::from(format!("--regid={}", chroot.gid)),
        groups,
        OsString::from("--"),
        chroot.unshare.clone().into_os_string(),
        option("--root=", root.as_os_str()),
        option("--wd=", inside.as_os_str()),
        OsString::from(format!("--setuid={}", chroot.uid)),
        OsString::from("--"),
    ];
    host_argv.extend(argv.iter().map(OsString::from));
    Ok(Launch {
        argv: host_argv,
        working_dir: None,
    })
}

fn option(name: &str, value: &OsStr) -> OsString {
    let mut option = OsString::from(name);
    option.push(value);
    option
}

/// The host path of the program `program` names in the image at `rootfs`, as a container
/// without a chroot runs it: an absolute path is taken in `rootfs`, a path with a `/` from the
/// working directory `working_dir` (inside the image), and a bare name is looked up in the
/// `PATH` of `env` (Docker's default without one) in `rootfs`. A name found nowhere is left as
/// is (the command fails as not found).
pub(crate) fn resolve_program(
    rootfs: &Path,
    program: &str,
    working_dir: &Path,
    env: &[(String, String)],
) -> PathBuf {
    if program.starts_with('/') {
        return resolve_in_root(rootfs, Path::new(program), true);
    }
    if program.contains('/') {
        return resolve_in_root(rootfs, &working_dir.join(program), true);
    }
    let path = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
    path.split(':')
        .filter(|directory| directory.starts_with('/'))
        .map(|directory| resolve_in_root(rootfs, &Path::new(directory).join(program), true))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            })
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// The host path of `path` (taken from the root, whether absolute or not) in the root
/// filesystem at `root`, its symbolic links followed as they would be inside it: an absolute
/// target starts again at `root`, and `..` never climbs above it.
///
/// With `keep_last_link`, a last component that is a link to a plain name in its own directory
/// (`sh -> busybox`) is kept as it is, so that the program run through it sees the name it was
/// called by (as multi-call programs need); the kernel follows such a link within the root
/// filesystem all the same.
pub(crate) fn resolve_in_root(root: &Path, path: &Path, keep_last_link: bool) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let target = match fs::read_link(root.join(&candidate)) {
            Ok(target) if links < MAX_LINKS => target,
            _ => {
                resolved = candidate;
                continue;
            }
        };
        let mut components = target.components();
        let local = matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        );
        if keep_last_link && pending.is_empty() && local {
            resolved = candidate;
            continue;
        }
        links += 1;
        if target.is_absolute() {
            resolved = PathBuf::new();
        }
        push_components(&mut pending, &target);
    }
    root.join(resolved)
}

/// Pushes the components of `path` that name something (`..` included) onto `pending`, the
/// first last (so that popping takes them in order).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Mounts the overlay of a container of the image whose root filesystem is `lower`, in its
/// directory `dir` (`upper`, `work` and `merged` made there); returns the merged directory.
///
/// # Errors
///
/// When a directory cannot be made, a path holds a character overlayfs options cannot (`,`,
/// `:`, `\`), or the mount fails (not root, no overlayfs, a filesystem overlayfs cannot use).
pub(crate) fn mount_overlay(dir: &Path, lower: &Path) -> io::Result<PathBuf> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    let merged = dir.join("merged");
    for directory in [&upper, &work, &merged] {
        fs::create_dir_all(directory)?;
    }
    // The overlay's root takes its owner and mode from the upper layer's.
    let root = fs::metadata(lower)?;
    fs::set_permissions(&upper, root.permissions())?;
    let mut options = Vec::new();
    for (name, path) in [
        ("lowerdir=", lower),
        (",upperdir=", &upper),
        (",workdir=", &work),
    ] {
        let bytes = path.as_os_str().as_bytes();
        if bytes.iter().any(|byte| matches!(byte, b',' | b':' | b'\\')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} holds a character overlayfs options cannot (`,`, `:` or `\\`)",
                    path.display()
                ),
            ));
        }
        options.extend_from_slice(name.as_bytes());
        options.extend_from_slice(bytes);
    }
    let options = CString::new(options)?;
    rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        options.as_c_str(),
    )?;
    Ok(merged)
}

/// Makes a chrooted container's root at `merged` ready to run in: `/proc`, `/dev`, the host's
/// `/etc/hosts` and `/etc/resolv.conf`, and its working directory `working_dir`. What it mounts
/// is left mounted on error ([`release`] undoes it).
///
/// # Errors
///
/// When something cannot be mounted, made or copied.
pub(crate) fn furnish(merged: &Path, working_dir: &Path) -> io::Result<()> {
    let proc = fresh_directory(merged, "proc")?;
    rustix::mount::mount(
        "proc",
        &proc,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None::<&CStr>,
    )
    .map_err(io::Error::from)
    .map_err(failed(format!("mounting proc on {}", proc.display())))?;
    let dev = fresh_directory(merged, "dev")?;
    rustix::mount::mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=755,size=65536k",
    )
    .map_err(io::Error::from)
    .map_err(failed(format!("mounting a tmpfs on {}", dev.display())))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::File::create(&target)?;
        rustix::mount::mount_bind(&host, &target)
            .map_err(io::Error::from)
            .map_err(failed(format!(
                "binding {} to {}",
                host.display(),
                target.display()
            )))?;
    }
    for (name, target) in DEVICE_LINKS {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    for name in ["shm", "pts"] {
        fs::create_dir(dev.join(name))?;
    }
    for name in HOST_FILES {
        copy_host_file(merged, name).map_err(failed(format!("copying the host's /etc/{name}")))?;
    }
    make_working_directory(merged, working_dir).map_err(failed(format!(
        "making the working directory {}",
        working_dir.display()
    )))
}

/// Says what failed in an I/O error.
fn failed(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |error| io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// `root/name` as a directory of its own: whatever else stands there (a file, a link the image
/// put there) is replaced. Only for a container's overlay, where the change stays its own.
fn fresh_directory(root: &Path, name: &str) -> io::Result<PathBuf> {
    let path = root.join(name);
    match fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            fs::remove_file(&path)?;
            fs::create_dir(&path)?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir(&path)?,
        Err(error) => return Err(error),
    }
    Ok(path)
}

/// Copies the host's `/etc/<name>` to `root/etc/<name>`, never writing through a link the image
/// put there (it is replaced). Nothing is copied when the host has no such file, or the image's
/// `/etc` or `/etc/<name>` is not a directory or a file.
fn copy_host_file(root: &Path, name: &str) -> io::Result<()> {
    let content = match fs::read(Path::new("/etc").join(name)) {
        Ok(content) => content,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let etc = root.join("etc");
    match fs::symlink_metadata(&etc) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir(&etc)?,
        Err(error) => return Err(error),
    }
    let path = etc.join(name);
    match fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(&path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // `create_new` (O_EXCL) never follows a link.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)?
        .write_all(&content)
}

/// Makes the directories of `working_dir` that `root` lacks, as runc does, stopping at a link
/// (which the process's `chdir` follows inside the chroot) or anything but a directory.
fn make_working_directory(root: &Path, working_dir: &Path) -> io::Result<()> {
    let mut current = root.to_owned();
    for component in working_dir.components() {
        let Component::Normal(name) = component else {
            if component == Component::ParentDir {
                return Ok(());
            }
            continue;
        };
        current.push(name);
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir(&current)?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Unmounts everything mounted at or under `dir` (the last mounted first), lazily when busy.
/// A directory that does not exist has nothing mounted.
///
/// # Errors
///
/// When the mount table cannot be read, or something is still mounted there afterwards: the
/// directory must then not be deleted.
pub(crate) fn release(dir: &Path) -> io::Result<()> {
    let dir = match fs::canonicalize(dir) {
        Ok(dir) => dir,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for point in mounts_under(&dir)?.iter().rev() {
        match rustix::mount::unmount(point, UnmountFlags::NOFOLLOW) {
            // Not (or no longer) a mount point, or gone with the one above it.
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(point, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                    .or_else(|error| match error {
                        rustix::io::Errno::INVAL | rustix::io::Errno::NOENT => Ok(()),
                        error => Err(error),
                    })?;
            }
            Err(error) => {
                return Err(io::Error::new(
                    io::Error::from(error).kind(),
                    format!("unmounting {}: {error}", point.display()),
                ));
            }
        }
    }
    match mounts_under(&dir)?.first() {
        Some(point) => Err(io::Error::other(format!(
            "{} is still mounted",
            point.display()
        ))),
        None => Ok(()),
    }
}

/// The mount points at or under `dir`, in the order they were mounted.
pub(crate) fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let table = fs::read("/proc/self/mountinfo")?;
    Ok(table
        .split(|byte| *byte == b'\n')
        .filter_map(|line| line.split(|byte| *byte == b' ').nth(4))
        .map(|point| PathBuf::from(OsString::from_vec(unescape(point))))
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// A field of `/proc/self/mountinfo` with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'\\'
            && let Some(digits) = tail.get(..3)
            && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        {
            let value = digits
                .iter()
                .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                rest = &tail[3..];
                continue;
            }
        }
        out.push(byte);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape(br"/a\040b\011c"), b"/a b\tc");
        assert_eq!(unescape(br"/plain"), b"/plain");
        assert_eq!(unescape(br"/odd\09"), br"/odd\09");
        assert_eq!(unescape(br"/end\"), br"/end\");
    }

    #[test]
    fn paths_resolve_inside_the_root() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin"))?;
        fs::write(root.join("usr/bin/busybox"), b"")?;
        fs::set_permissions(
            root.join("usr/bin/busybox"),
            fs::Permissions::from_mode(0o755),
        )?;
        std::os::unix::fs::symlink("usr/bin", root.join("bin"))?;
        std::os::unix::fs::symlink("busybox", root.join("usr/bin/sh"))?;
        std::os::unix::fs::symlink("/usr/bin/busybox", root.join("usr/bin/echo"))?;
        std::os::unix::fs::symlink("../../../../..", root.join("usr/up"))?;

        // A directory link is followed inside, a local last link kept.
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh"), true),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh"), false),
            root.join("usr/bin/busybox")
        );
        // An absolute link starts again at the root, not the host's.
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/echo"), true),
            root.join("usr/bin/busybox")
        );
        // `..` stops at the root.
        assert_eq!(
            resolve_in_root(root, Path::new("/usr/up/etc/passwd"), true),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../tmp"), false),
            root.join("tmp")
        );
        // A loop ends.
        std::os::unix::fs::symlink("loop", root.join("loop"))?;
        assert_eq!(
            resolve_in_root(root, Path::new("/loop"), false),
            root.join("loop")
        );

        let env = [("PATH".to_owned(), "/sbin:/bin".to_owned())];
        assert_eq!(
            resolve_program(root, "sh", Path::new("/"), &env),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_program(root, "/bin/sh", Path::new("/"), &env),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_program(root, "./busybox", Path::new("/usr/bin"), &env),
            root.join("usr/bin/busybox")
        );
        assert_eq!(
            resolve_program(root, "nothing", Path::new("/"), &env),
            PathBuf::from("nothing")
        );
        Ok(())
    }

    #[test]
    fn chrooted_commands_go_through_setpriv_and_unshare() -> Result<(), String> {
        let mut image = ImageRoot {
            reference: "docker.io/library/busybox:latest".to_owned(),
            image_id: "sha256:00".to_owned(),
            rootfs: PathBuf::from("/store/rootfs/00"),
            chroot: Some(Chroot {
                uid: 65534,
                gid: 65533,
                groups: vec![10, 29],
                setpriv: PathBuf::from("/usr/bin/setpriv"),
                unshare: PathBuf::from("/usr/bin/unshare"),
                root: None,
                shared: None,
            }),
            not_chrooted: String::new(),
        };
        let argv = ["sh".to_owned(), "-c".to_owned(), "pwd".to_owned()];
        let not_started = Filesystem::Image(image.clone());
        assert!(launch(&not_started, &argv, None, &[]).is_err());
        if let Some(chroot) = &mut image.chroot {
            chroot.root = Some(PathBuf::from("/state/c/rootfs/merged"));
        }
        let filesystem = Filesystem::Image(image);
        let launch = launch(&filesystem, &argv, Some(Path::new("/tmp")), &[])?;
        assert_eq!(
            launch.argv,
            [
                "/usr/bin/setpriv",
                "--regid=65533",
                "--groups=10,29",
                "--",
                "/usr/bin/unshare",
                "--root=/state/c/rootfs/merged",
                "--wd=/tmp",
                "--setuid=65534",
                "--",
                "sh",
                "-c",
                "pwd",
            ]
        );
        assert_eq!(launch.working_dir, None);
        assert_eq!(
            filesystem.detail(),
            "from image docker.io/library/busybox:latest's root filesystem, chrooted"
        );
        let mut annotations = Labels::new();
        filesystem.annotate(&mut annotations);
        assert_eq!(annotations[ROOTFS_ANNOTATION], ROOTFS_IMAGE);
        assert_eq!(annotations[IMAGE_ID_ANNOTATION], "sha256:00");
        Ok(())
    }

    #[test]
    fn host_commands_run_as_given() -> Result<(), String> {
        let filesystem = Filesystem::Host {
            reason: "image hello:1 is not in the node's image store".to_owned(),
        };
        let launch = launch(
            &filesystem,
            &["/bin/echo".to_owned(), "hi".to_owned()],
            Some(Path::new("/tmp")),
            &[],
        )?;
        assert_eq!(launch.argv, ["/bin/echo", "hi"]);
        assert_eq!(launch.working_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(
            filesystem.detail(),
            "on the host filesystem: image hello:1 is not in the node's image store"
        );
        let mut annotations = Labels::new();
        filesystem.annotate(&mut annotations);
        assert_eq!(annotations[ROOTFS_ANNOTATION], ROOTFS_HOST);
        assert!(!annotations.contains_key(IMAGE_ID_ANNOTATION));
        Ok(())
    }
}
