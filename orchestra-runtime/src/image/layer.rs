//! Applying an image's layers to a root filesystem.
//!
//! A layer is a tar archive (plain or gzip-compressed, told apart by its first bytes) of the
//! changes it makes to the layers below it, with the OCI whiteouts for deletions:
//!
//! - `dir/.wh.name` deletes `dir/name` of the lower layers;
//! - `dir/.wh..wh..opq` makes `dir` opaque: everything the lower layers put in it goes, what
//!   this layer puts there stays (whatever the order of the entries);
//! - other `.wh..wh.*` entries (aufs bookkeeping) are skipped.
//!
//! An entry replaces whatever stands at its path, except a directory over a directory, which
//! merges. Files keep their modes (set-id bits included) and modification times; ownership is
//! applied only when the store runs as root. Device nodes and FIFOs are skipped: a container's
//! `/dev` is its runtime's to provide.
//!
//! Unpacking never writes outside the root filesystem: an entry whose path is absolute or holds
//! `..` is refused, and so is one whose path goes through a symbolic link (a link entry may
//! point anywhere — `/bin/sh -> busybox`, even `/etc` — but nothing is ever written through it);
//! a hard link must name a file inside the root filesystem by a path without links. Refusals
//! are [`ImageError::UnsafePath`]s naming the entry. Layers are applied into a private staging
//! directory that no one else writes to, so what is checked stays true until it is used.
//!
//! Directories are kept writable by their owner while the layers are applied (a later layer may
//! add to a directory an earlier one made read-only); [`Unpacker::finish`] gives them their
//! modes at the end.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::bufread::MultiGzDecoder;
use tar::EntryType;

use super::ImageError;

/// The prefix of a whiteout entry's name.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The prefix of whiteout bookkeeping names (aufs' hard-link directory and the like).
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The name that makes its directory opaque.
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";

/// Which layer of which archive is being applied, for errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerSource<'a> {
    /// The archive imported.
    pub(crate) archive: &'a Path,
    /// The layer's name in it (its path or digest).
    pub(crate) layer: &'a str,
}

impl LayerSource<'_> {
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> ImageError {
        ImageError::InvalidLayer {
            archive: self.archive.to_owned(),
            layer: self.layer.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsafe_path(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafePath {
            archive: self.archive.to_owned(),
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The uncompressed tar stream of a layer blob: gzip is recognised by its magic bytes and
/// decompressed, anything else is read as a plain tar.
///
/// # Errors
///
/// [`ImageError::Unsupported`] for zstd, bzip2 and xz layers, [`ImageError::Io`] when the blob
/// cannot be read.
pub(crate) fn decompressed<'r, R: Read + 'r>(
    reader: R,
    source: LayerSource<'_>,
    blob_path: &Path,
) -> Result<Box<dyn Read + 'r>, ImageError> {
    let mut reader = BufReader::new(reader);
    let head = reader.fill_buf().map_err(|source| ImageError::Io {
        path: blob_path.to_owned(),
        source,
    })?;
    let unsupported = |what: &str| ImageError::Unsupported {
        archive: source.archive.to_owned(),
        what: format!("layer {} is {what}-compressed, which", source.layer),
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(unsupported("zstd"))
    } else if head.starts_with(b"BZh") {
        Err(unsupported("bzip2"))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(unsupported("xz"))
    } else {
        Ok(Box::new(reader))
    }
}

/// Applies layers, in order, to a root filesystem (see the [module](self)).
#[derive(Debug)]
pub(crate) struct Unpacker {
    root: PathBuf,
    chown: bool,
    /// The modes directories get once every layer is applied, by path in the root filesystem.
    dir_modes: BTreeMap<PathBuf, u32>,
    buffer: Vec<u8>,
}

impl Unpacker {
    /// An unpacker into the existing, empty directory `root`; `chown` applies the entries'
    /// owners (for a store running as root).
    pub(crate) fn new(root: PathBuf, chown: bool) -> Unpacker {
        Unpacker {
            root,
            chown,
            dir_modes: BTreeMap::new(),
            buffer: vec![0; 64 * 1024],
        }
    }

    /// Applies one layer's uncompressed tar stream. The stream is read up to the tar's end
    /// marker; the caller reads the rest if it needs all of it (to check its digest).
    pub(crate) fn apply(
        &mut self,
        reader: impl Read,
        source: LayerSource<'_>,
    ) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(reader);
        // What this layer wrote, and their parents: whiteouts in a layer only hide what the
        // layers below it wrote.
        let mut written = HashSet::new();
        let entries = archive
            .entries()
            .map_err(|error| source.invalid(format!("not a tar archive: {error}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|error| source.invalid(format!("unreadable entry: {error}")))?;
            let raw = entry
                .path()
                .map_err(|error| source.invalid(format!("unreadable entry path: {error}")))?
                .into_owned();
            let name = raw.display().to_string();
            let parts = relative_parts(&raw).map_err(|reason| source.unsafe_path(&name, reason))?;
            let Some((last, parents)) = parts.split_last() else {
                // The root directory itself: the staging directory stands for it.
                continue;
            };
            let last_bytes = last.as_bytes();
            if last_bytes == OPAQUE_WHITEOUT {
                self.make_dirs(parents, source, &name)?;
                self.make_opaque(parents, &written)?;
                continue;
            }
            if last_bytes.starts_with(WHITEOUT_META_PREFIX) {
                continue;
            }
            if let Some(hidden) = last_bytes.strip_prefix(WHITEOUT_PREFIX) {
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(source.unsafe_path(&name, "whites out no valid name"));
                }
                self.white_out(parents, OsStr::from_bytes(hidden), &written, source, &name)?;
                continue;
            }
            self.make_dirs(parents, source, &name)?;
            let relative: PathBuf = parts.iter().collect();
            let target = self.root.join(&relative);
            let header = entry.header();
            let invalid_header =
                |error: io::Error| source.invalid(format!("entry {name:?}: bad header: {error}"));
            let mode = header.mode().map_err(invalid_header)? & 0o7777;
            let owner = match (header.uid(), header.gid()) {
                (Ok(uid), Ok(gid)) => u32::try_from(uid).ok().zip(u32::try_from(gid).ok()),
                _ => None,
            };
            let mtime = header.mtime().ok();
            match header.entry_type() {
                EntryType::Directory => {
                    match fs::symlink_metadata(&target) {
                        Ok(existing) if existing.is_dir() => {}
                        Ok(_) => {
                            remove_tree(&target).map_err(io_error(&target))?;
                            fs::create_dir(&target).map_err(io_error(&target))?;
                        }
                        Err(error) if error.kind() == io::ErrorKind::NotFound => {
                            fs::create_dir(&target).map_err(io_error(&target))?;
                        }
                        Err(error) => return Err(io_error(&target)(error)),
                    }
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                        .map_err(io_error(&target))?;
                    self.set_owner(&target, owner)?;
                    self.dir_modes.insert(relative.clone(), mode);
                }
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    clear(&target)?;
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&target)
                        .map_err(io_error(&target))?;
                    loop {
                        let read = entry.read(&mut self.buffer).map_err(|error| {
                            source.invalid(format!("entry {name:?}: unreadable content: {error}"))
                        })?;
                        if read == 0 {
                            break;
                        }
                        file.write_all(&self.buffer[..read])
                            .map_err(io_error(&target))?;
                    }
                    self.set_owner(&target, owner)?;
                    // After the owner: changing it clears the set-id bits.
                    file.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(io_error(&target))?;
                    if let Some(mtime) = mtime {
                        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
                            .map_err(io_error(&target))?;
                    }
                }
                EntryType::Symlink => {
                    let link = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| source.invalid(format!("symlink {name:?} has no target")))?
                        .into_owned();
                    clear(&target)?;
                    std::os::unix::fs::symlink(&link, &target).map_err(io_error(&target))?;
                    self.set_owner(&target, owner)?;
                }
                EntryType::Link => {
                    let link = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| source.invalid(format!("hard link {name:?} has no target")))?
                        .into_owned();
                    let link_parts = relative_parts(&link).map_err(|reason| {
                        source.unsafe_path(
                            &name,
                            format!("links to {}, which {reason}", link.display()),
                        )
                    })?;
                    let Some((_, link_parents)) = link_parts.split_last() else {
                        return Err(source.unsafe_path(&name, "links to the root directory"));
                    };
                    if !self.plain_dirs(link_parents)? {
                        return Err(source.unsafe_path(
                            &name,
                            format!(
                                "links to {}, whose path goes through a symbolic link or a \
                                 missing directory",
                                link.display()
                            ),
                        ));
                    }
                    let link_target = self.root.join(link_parts.iter().collect::<PathBuf>());
                    match fs::symlink_metadata(&link_target) {
                        Ok(existing) if !existing.is_dir() => {}
                        _ => {
                            return Err(source.invalid(format!(
                                "hard link {name:?} links to {}, which is not a file of the \
                                 layers so far",
                                link.display()
                            )));
                        }
                    }
                    if link_target == target {
                        continue;
                    }
                    clear(&target)?;
                    fs::hard_link(&link_target, &target).map_err(io_error(&target))?;
                }
                // Device nodes, FIFOs, and tar's own headers.
                _ => continue,
            }
            for ancestor in relative.ancestors() {
                if !written.insert(ancestor.to_owned()) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Gives the directories the layers made their modes, deepest first (so a read-only parent
    /// does not stop its children from being changed).
    pub(crate) fn finish(self) -> Result<(), ImageError> {
        let mut dirs: Vec<_> = self.dir_modes.iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (relative, mode) in dirs {
            let parts: Vec<OsString> = relative
                .components()
                .map(|part| part.as_os_str().to_owned())
                .collect();
            // A directory later replaced by a link (or removed) is skipped: never chmod
            // through a link.
            if !self.plain_dirs(&parts)? {
                continue;
            }
            let path = self.root.join(relative);
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(io_error(&path))?;
        }
        Ok(())
    }

    /// Creates the missing directories of `parts` (mode 0755); refuses a symbolic link or a
    /// non-directory on the way.
    fn make_dirs(
        &self,
        parts: &[OsString],
        source: LayerSource<'_>,
        entry: &str,
    ) -> Result<(), ImageError> {
        let mut path = self.root.clone();
        for part in parts {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(existing) if existing.is_dir() => {}
                Ok(existing) if existing.file_type().is_symlink() => {
                    return Err(source.unsafe_path(
                        entry,
                        format!(
                            "goes through the symbolic link {} (nothing is written through a link)",
                            self.display(&path)
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(source.invalid(format!(
                        "entry {entry:?}: {} is not a directory",
                        self.display(&path)
                    )));
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(io_error(&path))?;
                }
                Err(error) => return Err(io_error(&path)(error)),
            }
        }
        Ok(())
    }

    /// Whether every one of `parts` is a directory, none a link.
    fn plain_dirs(&self, parts: &[OsString]) -> Result<bool, ImageError> {
        let mut path = self.root.clone();
        for part in parts {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(existing) if existing.is_dir() => {}
                Ok(_) => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(io_error(&path)(error)),
            }
        }
        Ok(true)
    }

    /// Deletes what the lower layers put at `parents/hidden`.
    fn white_out(
        &self,
        parents: &[OsString],
        hidden: &OsStr,
        written: &HashSet<PathBuf>,
        source: LayerSource<'_>,
        entry: &str,
    ) -> Result<(), ImageError> {
        let mut path = self.root.clone();
        for part in parents {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(existing) if existing.is_dir() => {}
                Ok(existing) if existing.file_type().is_symlink() => {
                    return Err(source.unsafe_path(
                        entry,
                        format!("deletes through the symbolic link {}", self.display(&path)),
                    ));
                }
                // Nothing below a missing directory (or a file) to delete.
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(error) => return Err(io_error(&path)(error)),
            }
        }
        let relative: PathBuf = parents
            .iter()
            .map(OsString::as_os_str)
            .chain([hidden])
            .collect();
        if written.contains(&relative) {
            return Ok(());
        }
        clear(&path.join(hidden))
    }

    /// Deletes what the lower layers put in the directory `parts` (which exists, no link on the
    /// way: [`Unpacker::make_dirs`] saw to it).
    fn make_opaque(
        &self,
        parts: &[OsString],
        written: &HashSet<PathBuf>,
    ) -> Result<(), ImageError> {
        let relative: PathBuf = parts.iter().collect();
        let dir = self.root.join(&relative);
        let children = fs::read_dir(&dir).map_err(io_error(&dir))?;
        for child in children {
            let child = child.map_err(io_error(&dir))?;
            if !written.contains(&relative.join(child.file_name())) {
                clear(&child.path())?;
            }
        }
        Ok(())
    }

    fn set_owner(&self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), ImageError> {
        match owner {
            Some((uid, gid)) if self.chown => {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_error(path))
            }
            _ => Ok(()),
        }
    }

    /// A path of the root filesystem as the image sees it (`/bin/x`), for messages.
    fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(inside) => format!("/{}", inside.display()),
            Err(_) => path.display().to_string(),
        }
    }
}

/// The normal components of an entry's path; refuses absolute paths and `..`.
fn relative_parts(path: &Path) -> Result<Vec<OsString>, &'static str> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out of the root filesystem with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(parts)
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Removes whatever stands at `path` (nothing when nothing does), never following a link.
fn clear(path: &Path) -> Result<(), ImageError> {
    remove_tree(path).map_err(io_error(path))
}

/// Removes `path` and, if it is a directory, everything under it, without following links and
/// making read-only directories writable on the way; succeeds when nothing is there.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let mut stack = vec![(path.to_owned(), false)];
    while let Some((path, emptied)) = stack.pop() {
        if emptied {
            fs::remove_dir(&path)?;
            continue;
        }
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if !metadata.is_dir() {
            fs::remove_file(&path)?;
            continue;
        }
        let mode = metadata.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))?;
        }
        let children = fs::read_dir(&path)?
            .map(|child| child.map(|child| child.path()))
            .collect::<io::Result<Vec<_>>>()?;
        stack.push((path, true));
        stack.extend(children.into_iter().map(|child| (child, false)));
    }
    Ok(())
}

/// The bytes the regular files under `root` hold, each file counted once however many hard
/// links it has.
pub(crate) fn tree_size(root: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir)? {
            let child = child?;
            let metadata = fs::symlink_metadata(child.path())?;
            if metadata.is_dir() {
                stack.push(child.path());
            } else if metadata.is_file() && seen.insert((metadata.dev(), metadata.ino())) {
                total = total.saturating_add(metadata.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_must_stay_inside() {
        assert_eq!(
            relative_parts(Path::new("./a/./b/")),
            Ok(vec![OsString::from("a"), OsString::from("b")])
        );
        assert_eq!(relative_parts(Path::new("./")), Ok(vec![]));
        assert!(relative_parts(Path::new("../x")).is_err());
        assert!(relative_parts(Path::new("a/../../x")).is_err());
        assert!(relative_parts(Path::new("/etc/x")).is_err());
    }

    #[test]
    fn trees_are_removed_even_when_read_only() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b"))?;
        fs::write(tree.join("a/b/file"), "x")?;
        std::os::unix::fs::symlink("/", tree.join("a/root"))?;
        fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o500))?;
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o000))?;
        remove_tree(&tree)?;
        assert!(!tree.exists());
        remove_tree(&tree)?;
        Ok(())
    }

    #[test]
    fn sizes_count_hard_linked_files_once() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("sub"))?;
        fs::write(dir.path().join("sub/a"), "12345")?;
        fs::hard_link(dir.path().join("sub/a"), dir.path().join("b"))?;
        fs::write(dir.path().join("c"), "678")?;
        std::os::unix::fs::symlink("sub/a", dir.path().join("d"))?;
        assert_eq!(tree_size(dir.path())?, 8);
        Ok(())
    }
}
