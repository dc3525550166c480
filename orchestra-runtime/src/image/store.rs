//! The content store: blobs, the index of references, and the unpacked root filesystems.
//!
//! Under its directory the store keeps:
//!
//! ```text
//! index.json              references -> image ids, and what each image is made of
//! blobs/sha256/<hex>      configurations, manifests and layers, by digest
//! rootfs/<hex>/           each image's unpacked root filesystem, by image id
//! tmp/                    staging: imports in progress, removals being deleted
//! ```
//!
//! `index.json` is replaced atomically (written beside, synced, renamed over), and is only
//! changed once what it points to is in place, so a crash leaves either the old or the new
//! index, each consistent; at worst a blob or root filesystem nothing points to, which a later
//! import of the same image reuses. A root filesystem appears under `rootfs/` by a rename once
//! all its layers are applied, never half-made. An index that cannot be read is an
//! [`ImageError::CorruptIndex`] naming the file: the store does not open, and nothing is
//! deleted. What `tmp/` holds is scratch of a store that stopped (its process gone) and is
//! deleted when a store opens.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use orchestra_core::container_runtime::{Image, ImageService, RuntimeError};
use serde::{Deserialize, Serialize};

use super::ImageError;
use super::archive::{ArchivedImage, JSON_MAX, StagedArchive, read_limited};
use super::config::ImageConfig;
use super::digest::{Digest, HashingReader, SHA256};
use super::layer::{LayerSource, Unpacker, decompressed, remove_tree, tree_size};
use super::reference::{Reference, image_id};

/// The index file, under the store's directory.
const INDEX_FILE: &str = "index.json";
/// The version of the index's format this store reads and writes.
const INDEX_SCHEMA_VERSION: u32 = 1;
const BLOBS_DIR: &str = "blobs";
const ROOTFS_DIR: &str = "rootfs";
const STAGING_DIR: &str = "tmp";

/// Distinguishes the staging directories of one process.
static STAGING_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The node's image store (see the [module](super)). Clones share the same store.
///
/// Under its directory the store keeps:
///
/// ```text
/// index.json              references -> image ids, and what each image is made of
/// blobs/sha256/<hex>      configurations, manifests and layers, by digest
/// rootfs/<hex>/           each image's unpacked root filesystem, by image id
/// tmp/                    staging: imports in progress, removals being deleted
/// ```
///
/// `index.json` is replaced atomically and only once what it points to is in place; a root
/// filesystem appears by a rename once all its layers are applied. Reopening the directory
/// finds every image again; an index that cannot be read is an [`ImageError::CorruptIndex`]
/// naming the file, and nothing is deleted.
#[derive(Clone, Debug)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    /// Whether unpacking applies the layers' owners (the store runs as root).
    chown: bool,
    /// The index as last written. Changed only after the new one is on disk.
    index: Mutex<Index>,
    /// Held through an import or a removal, so that what an import found in the store stays
    /// there until it commits (imports run one at a time, as the kubelet's pulls do by default).
    writer: Mutex<()>,
}

/// `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    /// By image id.
    images: BTreeMap<String, ImageRecord>,
    /// Normalised references (`docker.io/library/busybox:latest`, or `name@sha256:...` for the
    /// manifest digests of images that have one) to image ids.
    references: BTreeMap<String, String>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            schema_version: INDEX_SCHEMA_VERSION,
            images: BTreeMap::new(),
            references: BTreeMap::new(),
        }
    }
}

/// What the index knows of an image (its configuration is the blob of its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ImageRecord {
    /// The digest of its OCI manifest, if it came with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    /// The digests of its layer blobs, from the bottom.
    layers: Vec<String>,
    /// Its unpacked size.
    size_bytes: u64,
}

impl ImageRecord {
    /// Every blob the image needs, its configuration included.
    fn blobs<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(id)
            .chain(self.manifest.as_deref())
            .chain(self.layers.iter().map(String::as_str))
    }
}

/// An image of an archive, made ready to be committed to the store.
struct Prepared {
    id: Digest,
    record: ImageRecord,
    /// Index keys: tags and repository digests.
    references: Vec<String>,
    /// The staged blobs to keep.
    blobs: Vec<(Digest, PathBuf)>,
    /// The unpacked root filesystem, when it was not in the store already.
    rootfs: Option<PathBuf>,
}

impl ImageStore {
    /// Opens the store in `dir`, creating it if needed, and finds the images it holds. Open
    /// one store per directory and share it (clones share it): two open stores over the same
    /// directory do not see each other's changes.
    ///
    /// # Errors
    ///
    /// [`ImageError::CorruptIndex`] when `index.json` cannot be read as an index (nothing is
    /// changed: fix or remove the file), [`ImageError::Io`] when the directory cannot be made
    /// or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<ImageStore, ImageError> {
        let root = dir.as_ref().to_owned();
        for sub in [
            root.join(BLOBS_DIR).join(SHA256),
            root.join(ROOTFS_DIR),
            root.join(STAGING_DIR),
        ] {
            fs::create_dir_all(&sub).map_err(io_error(&sub))?;
        }
        let index = load_index(&root.join(INDEX_FILE))?;
        clean_staging(&root.join(STAGING_DIR))?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                chown: rustix::process::geteuid().is_root(),
                root,
                index: Mutex::new(index),
                writer: Mutex::new(()),
            }),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Imports the images of a tarball, an OCI image layout or a `docker save` archive, plain
    /// or gzip-compressed: stores their blobs, unpacks their root filesystems, and points the
    /// references the archive names them by at them (a reference that named another image
    /// moves; that image stays, reachable by its id). Returns the imported images.
    ///
    /// The import is whole or nothing: every image of the archive is read, checked and unpacked
    /// before any is added to the store. An image already in the store is not unpacked again.
    /// Imports and removals run one at a time; the other calls do not wait for them.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidArchive`] for a file that is not an image tarball (or is truncated,
    /// or names an image by an invalid reference), [`ImageError::DigestMismatch`] when a blob is
    /// not what the archive says, [`ImageError::InvalidLayer`] and [`ImageError::UnsafePath`]
    /// for a layer that cannot or may not be unpacked, [`ImageError::Unsupported`] for what
    /// the store cannot read (zstd layers, other digest algorithms), [`ImageError::Io`] when the
    /// store cannot write.
    pub fn import(&self, archive: &Path) -> Result<Vec<Image>, ImageError> {
        let _writer = self.write_lock();
        let staging = Staging::new(&self.inner.root)?;
        let files = staging.path.join("files");
        fs::create_dir(&files).map_err(io_error(&files))?;
        let staged = StagedArchive::read(archive, &files)?;
        let archived = staged.images()?;
        let mut prepared: Vec<Prepared> = Vec::new();
        for image in &archived {
            let already = prepared
                .iter()
                .any(|earlier| earlier.id == image.config.file.digest);
            prepared.push(self.prepare(archive, image, &staging, already)?);
        }
        self.commit(prepared)
    }

    /// Reads an image's configuration and names, and unpacks its layers (unless the store, or
    /// an earlier image of the same archive, has them already).
    fn prepare(
        &self,
        archive: &Path,
        image: &ArchivedImage,
        staging: &Staging,
        already_prepared: bool,
    ) -> Result<Prepared, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: archive.to_owned(),
            reason,
        };
        let id = image.config.file.digest.clone();
        let config_bytes = read_limited(
            &image.config.file.path,
            JSON_MAX,
            &image.config.name,
            archive,
        )?;
        let (_, diff_ids) = ImageConfig::parse(&config_bytes).map_err(|reason| {
            invalid(format!(
                "configuration {} is not an image configuration: {reason}",
                image.config.name
            ))
        })?;
        if !diff_ids.is_empty() && diff_ids.len() != image.layers.len() {
            return Err(invalid(format!(
                "configuration {} lists {} layers, the manifest {}",
                image.config.name,
                diff_ids.len(),
                image.layers.len()
            )));
        }
        let manifest_digest = image
            .manifest
            .as_ref()
            .map(|blob| blob.file.digest.to_string());
        let mut references = Vec::new();
        for name in &image.names {
            let reference = Reference::parse(name).map_err(|error| {
                invalid(format!(
                    "it names an image {name:?}, which is not a valid reference: {error}"
                ))
            })?;
            references.push(reference.key());
            if let Some(manifest) = &manifest_digest
                && reference.digest().is_none()
            {
                references.push(reference.with_digest(manifest).key());
            }
        }
        let mut blobs: Vec<(Digest, PathBuf)> = vec![(id.clone(), image.config.file.path.clone())];
        blobs.extend(
            image
                .manifest
                .iter()
                .chain(&image.layers)
                .map(|blob| (blob.file.digest.clone(), blob.file.path.clone())),
        );
        let existing = self
            .lock()
            .images
            .get(&id.to_string())
            .map(|record| record.size_bytes);
        let in_store = existing.is_some() && self.rootfs_dir(&id).is_dir();
        let (rootfs, size_bytes) = if in_store || already_prepared {
            (None, existing.unwrap_or_default())
        } else {
            let dir = staging.path.join(format!("rootfs-{}", id.hex()));
            fs::create_dir(&dir).map_err(io_error(&dir))?;
            let size = self.unpack(archive, image, &diff_ids, &dir)?;
            (Some(dir), size)
        };
        Ok(Prepared {
            record: ImageRecord {
                manifest: manifest_digest,
                layers: image
                    .layers
                    .iter()
                    .map(|blob| blob.file.digest.to_string())
                    .collect(),
                size_bytes,
            },
            id,
            references,
            blobs,
            rootfs,
        })
    }

    /// Applies an image's layers, in order, into `dir`, checking each against its
    /// `rootfs.diff_ids` digest; returns the unpacked size.
    fn unpack(
        &self,
        archive: &Path,
        image: &ArchivedImage,
        diff_ids: &[Digest],
        dir: &Path,
    ) -> Result<u64, ImageError> {
        let mut unpacker = Unpacker::new(dir.to_owned(), self.inner.chown);
        for (position, layer) in image.layers.iter().enumerate() {
            let source = LayerSource {
                archive,
                layer: &layer.name,
            };
            let file = File::open(&layer.file.path).map_err(io_error(&layer.file.path))?;
            let mut stream = HashingReader::new(decompressed(file, source, &layer.file.path)?);
            unpacker.apply(&mut stream, source)?;
            stream.drain().map_err(|error| {
                source.invalid(format!("unreadable after its entries: {error}"))
            })?;
            let (diff_id, _) = stream.finish();
            if let Some(expected) = diff_ids.get(position)
                && *expected != diff_id
            {
                return Err(ImageError::DigestMismatch {
                    archive: archive.to_owned(),
                    blob: format!("{} (uncompressed, rootfs.diff_ids[{position}])", layer.name),
                    expected: expected.to_string(),
                    actual: diff_id.to_string(),
                });
            }
        }
        // Measured before the directories get their modes (an image may have directories its
        // owner cannot read).
        let size = tree_size(dir).map_err(io_error(dir))?;
        unpacker.finish()?;
        Ok(size)
    }

    /// Puts the prepared images' blobs and root filesystems in place, then writes the index
    /// that points to them.
    fn commit(&self, prepared: Vec<Prepared>) -> Result<Vec<Image>, ImageError> {
        let mut index = self.lock();
        let mut next = index.clone();
        let mut ids = Vec::new();
        for image in prepared {
            let target = self.rootfs_dir(&image.id);
            if let Some(unpacked) = &image.rootfs
                && fs::symlink_metadata(&target).is_err()
            {
                fs::rename(unpacked, &target).map_err(io_error(&target))?;
            }
            let id = image.id.to_string();
            match next.images.get_mut(&id) {
                // Known already (perhaps from another kind of archive, with other layer
                // blobs): the record and its blobs stay, so that none is left unaccounted for.
                Some(record) => {
                    if image.rootfs.is_some() {
                        record.size_bytes = image.record.size_bytes;
                    }
                }
                None => {
                    for (digest, staged) in &image.blobs {
                        self.place_blob(digest, staged)?;
                    }
                    next.images.insert(id.clone(), image.record);
                }
            }
            for reference in image.references {
                next.references.insert(reference, id.clone());
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.save_index(&next)?;
        *index = next;
        Ok(ids.iter().filter_map(|id| image_of(&index, id)).collect())
    }

    /// Stores a staged blob under its digest, unless the store has it.
    fn place_blob(&self, digest: &Digest, staged: &Path) -> Result<(), ImageError> {
        let target = self.blob_path(digest);
        if fs::symlink_metadata(&target).is_ok() {
            return Ok(());
        }
        match fs::hard_link(staged, &target) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                // Another filesystem: copy beside it, then rename into place.
                let partial = self.staging_file("blob");
                fs::copy(staged, &partial).map_err(io_error(&partial))?;
                fs::rename(&partial, &target).map_err(io_error(&target))
            }
        }
    }

    /// Every image in the store, by id.
    pub fn list(&self) -> Vec<Image> {
        let index = self.lock();
        index
            .images
            .keys()
            .filter_map(|id| image_of(&index, id))
            .collect()
    }

    /// The id of the image `reference` names — a reference in any spelling (`busybox`,
    /// `busybox:latest`, `docker.io/library/busybox:latest`, `busybox@sha256:<manifest>`) or
    /// an id (`sha256:<hex>` or the hex alone) — if the store has it.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] when `reference` is neither a reference nor an id.
    pub fn resolve(&self, reference: &str) -> Result<Option<String>, ImageError> {
        resolve(&self.lock(), reference)
    }

    /// The image `reference` names, if the store has it (see [`ImageStore::resolve`]).
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] when `reference` is neither a reference nor an id.
    pub fn status(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let index = self.lock();
        Ok(resolve(&index, reference)?.and_then(|id| image_of(&index, &id)))
    }

    /// The root filesystem of the image `reference` names, if the store has it: a directory
    /// that a runtime runs the image's containers in (with `chroot` when it runs as root). It
    /// is shared by every container of the image: a runtime that lets containers write should
    /// give each its own copy or overlay. `None` for an invalid reference too.
    pub fn rootfs(&self, reference: &str) -> Option<PathBuf> {
        let id = self.resolve(reference).ok().flatten()?;
        let dir = self.rootfs_dir(&Digest::parse(&id)?);
        dir.is_dir().then_some(dir)
    }

    /// The configuration of the image `reference` names, if the store has it: its entrypoint,
    /// command, environment, working directory and user.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] for an invalid reference, [`ImageError::CorruptBlob`]
    /// or [`ImageError::Io`] when the stored configuration cannot be read.
    pub fn config(&self, reference: &str) -> Result<Option<ImageConfig>, ImageError> {
        let Some(id) = self.resolve(reference)? else {
            return Ok(None);
        };
        let Some(digest) = Digest::parse(&id) else {
            return Ok(None);
        };
        let path = self.blob_path(&digest);
        let bytes = read_limited(&path, JSON_MAX, &id, &path).map_err(|error| match error {
            ImageError::InvalidArchive { reason, .. } => ImageError::CorruptBlob {
                path: path.clone(),
                reason,
            },
            other => other,
        })?;
        if Digest::of(&bytes) != digest {
            return Err(ImageError::CorruptBlob {
                path,
                reason: "its content no longer matches its digest".to_owned(),
            });
        }
        let (config, _) = ImageConfig::parse(&bytes)
            .map_err(|reason| ImageError::CorruptBlob { path, reason })?;
        Ok(Some(config))
    }

    /// Removes what `reference` names: a reference (tag or repository digest) is removed, and
    /// the image with it once no tag is left on it; an id removes the image and all its
    /// references. A removed image's root filesystem goes, and so do its blobs that no other
    /// image uses. Removing what is not there succeeds.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] for an invalid reference, [`ImageError::Io`] when the
    /// index cannot be written or the image's files cannot be deleted.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let writer = self.write_lock();
        let mut index = self.lock();
        let Some(id) = resolve(&index, reference)? else {
            return Ok(());
        };
        let mut next = index.clone();
        let remove_image = match image_id(reference) {
            Some(_) => true,
            None => {
                next.references.remove(&Reference::parse(reference)?.key());
                !next
                    .references
                    .iter()
                    .any(|(key, target)| *target == id && !key.contains('@'))
            }
        };
        let removed = if remove_image {
            next.references.retain(|_, target| *target != id);
            next.images.remove(&id)
        } else {
            None
        };
        self.save_index(&next)?;
        *index = next;
        let Some(record) = removed else {
            return Ok(());
        };
        let in_use: BTreeSet<&str> = index
            .images
            .iter()
            .flat_map(|(other, record)| record.blobs(other))
            .collect();
        for blob in record.blobs(&id).filter(|blob| !in_use.contains(blob)) {
            if let Some(digest) = Digest::parse(blob) {
                let path = self.blob_path(&digest);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io_error(&path)(error)),
                }
            }
        }
        let Some(digest) = Digest::parse(&id) else {
            return Ok(());
        };
        let rootfs = self.rootfs_dir(&digest);
        if fs::symlink_metadata(&rootfs).is_err() {
            return Ok(());
        }
        // Out of the way at once (an import of the same image may come next); deleted once the
        // index is free again.
        let doomed = Staging::new(&self.inner.root)?;
        let moved = doomed.path.join("rootfs");
        fs::rename(&rootfs, &moved).map_err(io_error(&rootfs))?;
        drop(index);
        drop(writer);
        remove_tree(&moved).map_err(io_error(&moved))
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index is replaced whole after the file is written, so a panic elsewhere cannot
        // leave it half-changed.
        self.inner
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join(BLOBS_DIR)
            .join(SHA256)
            .join(digest.hex())
    }

    fn rootfs_dir(&self, id: &Digest) -> PathBuf {
        self.inner.root.join(ROOTFS_DIR).join(id.hex())
    }

    /// A fresh path in the staging directory.
    fn staging_file(&self, kind: &str) -> PathBuf {
        self.inner.root.join(STAGING_DIR).join(staging_name(kind))
    }

    /// Writes `index` atomically: to a file beside, synced, renamed over the index.
    fn save_index(&self, index: &Index) -> Result<(), ImageError> {
        let path = self.inner.root.join(INDEX_FILE);
        let partial = self.staging_file("index");
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|error| io_error(&path)(io::Error::other(error)))?;
        let write = || -> io::Result<()> {
            let mut file = File::create(&partial)?;
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        write().map_err(io_error(&partial))?;
        fs::rename(&partial, &path).map_err(io_error(&path))?;
        File::open(&self.inner.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.inner.root))
    }
}

/// The image `id` as CRI reports it.
fn image_of(index: &Index, id: &str) -> Option<Image> {
    let record = index.images.get(id)?;
    Some(Image {
        id: id.to_owned(),
        repo_tags: index
            .references
            .iter()
            .filter(|(key, target)| *target == id && !key.contains('@'))
            .map(|(key, _)| key.clone())
            .collect(),
        size_bytes: record.size_bytes,
    })
}

fn resolve(index: &Index, reference: &str) -> Result<Option<String>, ImageError> {
    if let Some(id) = image_id(reference) {
        return Ok(index.images.contains_key(&id).then_some(id));
    }
    let reference = Reference::parse(reference)?;
    Ok(index.references.get(&reference.key()).cloned())
}

fn load_index(path: &Path) -> Result<Index, ImageError> {
    let corrupt = |reason: String| ImageError::CorruptIndex {
        path: path.to_owned(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
        Err(error) => return Err(io_error(path)(error)),
    };
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    if index.schema_version != INDEX_SCHEMA_VERSION {
        return Err(corrupt(format!(
            "its schemaVersion is {}, this store reads {INDEX_SCHEMA_VERSION}",
            index.schema_version
        )));
    }
    for (id, record) in &index.images {
        if let Some(bad) = record.blobs(id).find(|blob| Digest::parse(blob).is_none()) {
            return Err(corrupt(format!(
                "image {id:?} names the blob {bad:?}, not a sha256 digest"
            )));
        }
    }
    for (reference, id) in &index.references {
        if !index.images.contains_key(id) {
            return Err(corrupt(format!(
                "reference {reference:?} points to the image {id:?}, which it does not hold"
            )));
        }
    }
    Ok(index)
}

/// A staging directory's name: what it is for, the process, and a sequence number.
fn staging_name(kind: &str) -> String {
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        STAGING_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes the staging left by processes that are gone (another store in this or a running
/// process keeps its own).
fn clean_staging(dir: &Path) -> Result<(), ImageError> {
    let entries = fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.split('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| {
            pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
        });
        if !alive {
            remove_tree(&entry.path()).map_err(io_error(&entry.path()))?;
        }
    }
    Ok(())
}

/// A directory under the store's `tmp/`, deleted with what it holds when dropped.
#[derive(Debug)]
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(root: &Path) -> Result<Staging, ImageError> {
        let path = root.join(STAGING_DIR).join(staging_name("staging"));
        fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: what is left is deleted when a store next opens.
        let _ = remove_tree(&self.path);
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs a store call on tokio's blocking threads (it reads and writes files).
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| RuntimeError::Internal(format!("image store call failed: {error}")))?
        .map_err(RuntimeError::from)
}

#[async_trait]
impl ImageService for ImageStore {
    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        Ok(self.list())
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        Ok(self.status(image)?)
    }

    async fn import_image(&self, archive: &Path) -> Result<Vec<Image>, RuntimeError> {
        let store = self.clone();
        let archive = archive.to_owned();
        blocking(move || store.import(&archive)).await
    }

    async fn pull_image(&self, image: &str) -> Result<Image, RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "cannot pull {image:?}: no image registry is configured or reachable from this node; \
             import the image from a tarball instead (an OCI image layout or a `docker save` \
             archive, e.g. `docker save {image} -o image.tar`)"
        )))
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let store = self.clone();
        let image = image.to_owned();
        blocking(move || store.remove(&image)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_and_bad_ones_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(INDEX_FILE);
        assert_eq!(load_index(&path)?, Index::default());

        let id = Digest::of(b"config").to_string();
        let mut index = Index::default();
        index.images.insert(
            id.clone(),
            ImageRecord {
                manifest: None,
                layers: vec![Digest::of(b"layer").to_string()],
                size_bytes: 3,
            },
        );
        index
            .references
            .insert("docker.io/library/a:latest".into(), id.clone());
        fs::write(&path, serde_json::to_vec(&index)?)?;
        assert_eq!(load_index(&path)?, index);

        for bad in [
            "{".to_owned(),
            "[]".to_owned(),
            r#"{"schemaVersion": 2, "images": {}, "references": {}}"#.to_owned(),
            format!(r#"{{"schemaVersion": 1, "images": {{}}, "references": {{"a": "{id}"}}}}"#),
            format!(
                r#"{{"schemaVersion": 1, "images": {{"{id}": {{"layers": ["md5:1"], "size_bytes": 0}}}}, "references": {{}}}}"#
            ),
        ] {
            fs::write(&path, &bad)?;
            match load_index(&path) {
                Err(ImageError::CorruptIndex { path: named, .. }) => assert_eq!(named, path),
                other => panic!("{bad}: {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn staging_of_gone_processes_is_cleaned() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ours = dir.path().join(staging_name("staging"));
        let gone = dir.path().join("staging-4294967295-0");
        let odd = dir.path().join("leftover");
        for path in [&ours, &gone, &odd] {
            fs::create_dir(path)?;
        }
        clean_staging(dir.path())?;
        assert!(ours.exists());
        assert!(!gone.exists());
        assert!(!odd.exists());
        Ok(())
    }
}
