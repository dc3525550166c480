//! The node's image store: images imported from tarballs, unpacked to root filesystems.
//!
//! No registry is reachable from an Orchestra node (yet), so images come in as files: an **OCI
//! image layout** tarball (`skopeo copy ... oci-archive:`, `buildah push ... oci-archive:`,
//! `ctr export`) or a **`docker save`** archive, plain or gzip-compressed.
//! [`ImageStore::import`] reads one (see [Formats](#formats) for what is read and checked), keeps its blobs by digest, applies each image's layers in order into a root
//! filesystem of its own (OCI whiteouts honoured, nothing written outside it: see the layer
//! rules below), and files the image under its id — the digest of its configuration,
//! `sha256:...` — and under the references the archive names it by, normalised as Kubernetes
//! and containerd do ([`Reference`]): `busybox` is stored as `docker.io/library/busybox:latest`,
//! and `busybox`, `busybox:latest`, the full name and the id all find it.
//!
//! # How a runtime uses it
//!
//! The process runtime runs a container from its image by asking the store for two things:
//!
//! - [`ImageStore::rootfs`]: the image's unpacked root filesystem, a directory to `chroot` into
//!   when the runtime runs as root (it is shared by the image's containers: give each a copy or
//!   an overlay if they may write);
//! - [`ImageStore::config`]: the image's [`ImageConfig`] — entrypoint, command, environment,
//!   working directory, user — which [`ImageConfig::process`] combines with the container's
//!   `command`, `args`, `env` and `workingDir` by Kubernetes' rules into the
//!   [`ContainerProcess`] to start; [`resolve_user`] turns the image's `User` into ids from the
//!   root filesystem's `/etc/passwd` and `/etc/group`.
//!
//! [`ImageStore`] also implements CRI's [`ImageService`](orchestra_core::container_runtime::ImageService)
//! for the node agent: list, status, import, remove; a pull is refused
//! ([`RuntimeError::Unsupported`])
//! with a message saying to import the image from a tarball.
//!
//! # Formats
//!
//! - **`docker save`** (a `manifest.json` at the top): a list of `{Config, RepoTags, Layers}`
//!   naming files of the archive (`<hex>.json` and `<id>/layer.tar` from older Dockers,
//!   `blobs/sha256/<hex>` from Docker 25 on, which also writes an OCI layout beside).
//! - **OCI image layout** (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): `index.json`
//!   lists manifests by descriptor, each tagged by its `org.opencontainers.image.ref.name` (or
//!   containerd's `io.containerd.image.name`) annotation; a name with a `/`, `:` or `@` is a
//!   full reference, a bare word a repository name. An index of per-platform manifests yields
//!   the one for this node's platform.
//!
//! Every digest the format gives is checked: descriptors' digests and sizes, blobs'
//! `blobs/sha256/<hex>` names, a configuration's `<hex>.json` name, and each layer's
//! uncompressed digest against the configuration's `rootfs.diff_ids`; a mismatch is an
//! [`ImageError::DigestMismatch`] naming the blob. An image's id is its configuration's digest.
//!
//! # Layers
//!
//! Layers are plain or gzip-compressed tars (told apart by their first bytes; zstd is refused
//! as unsupported). A layer's `.wh.<name>` entry deletes `<name>` of the layers below, and
//! `.wh..wh..opq` empties its directory of what the layers below put there. Entries with an
//! absolute path or `..`, and entries whose path goes through a symbolic link (the image may
//! hold any links, but nothing is ever written through one), are refused with
//! [`ImageError::UnsafePath`]. Modes are kept; owners are applied when the store runs as root.
//!
//! # Examples
//!
//! ```
//! use orchestra_runtime::image::ImageStore;
//!
//! /// A tar of regular files.
//! fn tar(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
//!     let mut builder = tar::Builder::new(Vec::new());
//!     for (path, data) in files {
//!         let mut header = tar::Header::new_gnu();
//!         header.set_size(data.len() as u64);
//!         header.set_mode(0o755);
//!         builder.append_data(&mut header, path, *data)?;
//!     }
//!     builder.into_inner()
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // A `docker save` archive of one image with one layer.
//! let layer = tar(&[("bin/hello", b"#!/bin/sh\necho hello\n")])?;
//! let config = br#"{"os": "linux", "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/bin"]}}"#;
//! let manifest = br#"[{"Config": "config.json", "RepoTags": ["hello:1"], "Layers": ["layer.tar"]}]"#;
//! let archive = dir.path().join("hello.tar");
//! std::fs::write(
//!     &archive,
//!     tar(&[("manifest.json", manifest), ("config.json", config), ("layer.tar", &layer)])?,
//! )?;
//!
//! let store = ImageStore::open(dir.path().join("images"))?;
//! let images = store.import(&archive)?;
//! assert_eq!(images[0].repo_tags, ["docker.io/library/hello:1"]);
//!
//! // What a runtime needs to run a container of it.
//! let rootfs = store.rootfs("hello:1").ok_or("no root filesystem")?;
//! assert!(rootfs.join("bin/hello").is_file());
//! let config = store.config("docker.io/library/hello:1")?.ok_or("no configuration")?;
//! assert_eq!(config.process_args(&[], &[]), ["/bin/hello"]);
//!
//! store.remove("hello:1")?;
//! assert!(store.list().is_empty());
//! # Ok(())
//! # }
//! ```

mod archive;
mod config;
mod digest;
mod layer;
mod reference;
mod store;
mod user;

use std::io;
use std::path::PathBuf;

use orchestra_core::container_runtime::RuntimeError;

pub use config::{ContainerProcess, ImageConfig};
pub use reference::{DEFAULT_DOMAIN, DEFAULT_TAG, Reference, image_id};
pub use store::ImageStore;
pub use user::{UserIds, resolve_user};

/// Why an image store call failed. Each error names the file, blob, layer or entry at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A file of the store (or a staging copy) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store's index cannot be read. Nothing was changed or deleted: fix or remove the
    /// file (removing it forgets the images, whose files stay).
    #[error("the image store's index {} is corrupt: {reason}", path.display())]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob of the store is not what it was (changed on disk since it was imported).
    #[error("the stored blob {} is corrupt: {reason}", path.display())]
    CorruptBlob {
        /// The blob file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not an image tarball, or not a whole one.
    #[error("{}: {reason}", archive.display())]
    InvalidArchive {
        /// The archive imported.
        archive: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob's content does not have the digest the archive gives it.
    #[error("{}: blob {blob} has the digest {actual}, not {expected}", archive.display())]
    DigestMismatch {
        /// The archive imported.
        archive: PathBuf,
        /// The blob, by its path in the archive.
        blob: String,
        /// The digest the archive gives.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A layer cannot be applied (a bad entry, a truncated stream).
    #[error("{}: layer {layer}: {reason}", archive.display())]
    InvalidLayer {
        /// The archive imported.
        archive: PathBuf,
        /// The layer, by its path or digest in the archive.
        layer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer entry would write outside the root filesystem: an absolute path, `..`, or a
    /// path through a symbolic link.
    #[error("{}: layer {layer}: entry {entry:?} {reason}", archive.display())]
    UnsafePath {
        /// The archive imported.
        archive: PathBuf,
        /// The layer.
        layer: String,
        /// The entry's path, as the layer has it.
        entry: String,
        /// How it would escape.
        reason: String,
    },
    /// The archive uses something the store cannot read (zstd layers, other digest
    /// algorithms, artifacts that are not container images).
    #[error("{}: {what} is not supported", archive.display())]
    Unsupported {
        /// The archive imported.
        archive: PathBuf,
        /// What.
        what: String,
    },
    /// A string that is neither an image reference nor an image id.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The string.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image's user is not in its root filesystem's `/etc/passwd` or `/etc/group`.
    #[error("cannot resolve user {user:?}: {reason}")]
    UnknownUser {
        /// The user as the image (or container) gives it.
        user: String,
        /// Why.
        reason: String,
    },
}

/// A `Result` of the image store.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl From<ImageError> for RuntimeError {
    fn from(error: ImageError) -> RuntimeError {
        let field = match &error {
            ImageError::InvalidReference { .. } => "image",
            ImageError::UnknownUser { .. } => "user",
            ImageError::InvalidArchive { .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::InvalidLayer { .. }
            | ImageError::UnsafePath { .. } => "archive",
            ImageError::Unsupported { .. } => return RuntimeError::Unsupported(error.to_string()),
            ImageError::Io { .. }
            | ImageError::CorruptIndex { .. }
            | ImageError::CorruptBlob { .. } => {
                return RuntimeError::Internal(error.to_string());
            }
        };
        RuntimeError::InvalidArgument {
            field: field.to_owned(),
            reason: error.to_string(),
        }
    }
}
