//! Reading image tarballs: OCI image layouts and `docker save` archives.
//!
//! The archive (plain, or gzip-compressed as `docker save | gzip` makes it) is read once, from
//! start to end: each regular file is copied to a staging directory while its sha256 is
//! computed, links between its entries are remembered (`docker save` links a layer shared by
//! two images to its first copy), and nothing is written under the entries' own names — an
//! archive's paths are only ever looked up, never followed on the filesystem. Then the format
//! is read from the staged files:
//!
//! - **`docker save`** (a `manifest.json` at the top): a list of `{Config, RepoTags, Layers}`,
//!   paths of files in the archive. Older Dockers name the configuration `<hex>.json` and the
//!   layers `<id>/layer.tar`; Docker 25 and later write an OCI layout beside `manifest.json`
//!   and name blobs `blobs/sha256/<hex>`.
//! - **OCI image layout** (`oci-layout` and `index.json`): `index.json` lists manifests (or
//!   indexes of per-platform manifests, of which the host's platform is taken) by descriptor;
//!   each names its tag in the `org.opencontainers.image.ref.name` annotation (or containerd's
//!   `io.containerd.image.name`). A name with a `/`, `:` or `@` is a full reference; a bare word
//!   is read as a repository name (`busybox`, so `docker.io/library/busybox:latest`).
//!
//! Every blob whose digest the format gives is checked against it: a descriptor's digest and
//! size, a blob's `blobs/sha256/<hex>` path, a configuration's `<hex>.json` name, and (when the
//! layers are applied) each layer's uncompressed digest against the configuration's
//! `rootfs.diff_ids`. A mismatch is an [`ImageError::DigestMismatch`] naming the blob.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ImageError;
use super::digest::{Digest, HashingReader, SHA256};

/// The largest JSON document (manifest, index, configuration) read into memory.
pub(crate) const JSON_MAX: u64 = 16 * 1024 * 1024;
/// How many links in a row are followed inside an archive.
const LINK_HOPS_MAX: usize = 16;
/// How deep image indexes may nest.
const INDEX_DEPTH_MAX: usize = 4;

const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The annotation of an index entry naming its image (a tag or a full reference).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation naming the image by its full reference.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A file of the archive, copied to the staging directory.
#[derive(Clone, Debug)]
pub(crate) struct StagedFile {
    /// Where the copy is.
    pub(crate) path: PathBuf,
    /// Its digest.
    pub(crate) digest: Digest,
    /// Its size.
    pub(crate) size: u64,
}

/// A blob an image is made of, as found in the archive and checked.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    /// Its name in the archive, for messages.
    pub(crate) name: String,
    /// The staged copy.
    pub(crate) file: StagedFile,
}

/// An image the archive holds: what it is made of, and the names the archive gives it.
#[derive(Clone, Debug)]
pub(crate) struct ArchivedImage {
    /// Its configuration.
    pub(crate) config: Blob,
    /// The OCI manifest, when the archive has one (not `docker save`'s older format).
    pub(crate) manifest: Option<Blob>,
    /// Its layers, from the bottom.
    pub(crate) layers: Vec<Blob>,
    /// The references the archive names it by, as written there.
    pub(crate) names: Vec<String>,
}

/// A read archive: its files, staged, by path.
#[derive(Debug)]
pub(crate) struct StagedArchive {
    archive: PathBuf,
    files: HashMap<String, StagedFile>,
    /// Symbolic and hard links, by path: the path they lead to.
    links: HashMap<String, String>,
}

impl StagedArchive {
    /// Reads `archive`, copying its files into the existing directory `staging`.
    pub(crate) fn read(archive: &Path, staging: &Path) -> Result<StagedArchive, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: archive.to_owned(),
            reason,
        };
        let file =
            File::open(archive).map_err(|error| invalid(format!("cannot open it: {error}")))?;
        let mut reader = BufReader::new(file);
        let head = reader
            .fill_buf()
            .map_err(|error| invalid(format!("cannot read it: {error}")))?;
        if head.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let mut tar = tar::Archive::new(stream);
        let mut staged = StagedArchive {
            archive: archive.to_owned(),
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let entries = tar
            .entries()
            .map_err(|error| invalid(format!("not a tar archive: {error}")))?;
        for (index, entry) in entries.enumerate() {
            let entry = entry.map_err(|error| invalid(format!("unreadable entry: {error}")))?;
            let raw_path = entry
                .path()
                .map_err(|error| invalid(format!("unreadable entry path: {error}")))?;
            let path = normalise(&raw_path.to_string_lossy());
            if path.is_empty() {
                continue;
            }
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let copy = staging.join(index.to_string());
                    let file = staged.stage(entry, &path, &copy)?;
                    staged.links.remove(&path);
                    staged.files.insert(path, file);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| invalid(format!("link {path} has no target")))?;
                    let target = target.to_string_lossy();
                    // A symbolic link is relative to its directory, a hard link to the top.
                    let target = match (kind, target.starts_with('/')) {
                        (tar::EntryType::Symlink, false) => {
                            let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                            normalise(&format!("{dir}/{target}"))
                        }
                        _ => normalise(&target),
                    };
                    staged.files.remove(&path);
                    staged.links.insert(path, target);
                }
                _ => {}
            }
        }
        Ok(staged)
    }

    fn stage(
        &self,
        entry: tar::Entry<'_, Box<dyn Read>>,
        path: &str,
        copy: &Path,
    ) -> Result<StagedFile, ImageError> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(copy)
            .map_err(|source| ImageError::Io {
                path: copy.to_owned(),
                source,
            })?;
        let mut reader = HashingReader::new(entry);
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer).map_err(|error| {
                self.invalid(format!("{path}: unreadable content (truncated?): {error}"))
            })?;
            if read == 0 {
                break;
            }
            io::Write::write_all(&mut out, &buffer[..read]).map_err(|source| ImageError::Io {
                path: copy.to_owned(),
                source,
            })?;
        }
        let (digest, size) = reader.finish();
        Ok(StagedFile {
            path: copy.to_owned(),
            digest,
            size,
        })
    }

    fn invalid(&self, reason: String) -> ImageError {
        ImageError::InvalidArchive {
            archive: self.archive.clone(),
            reason,
        }
    }

    /// The file at `path` in the archive, links followed.
    fn file(&self, path: &str) -> Result<&StagedFile, ImageError> {
        let mut current = normalise(path);
        for _ in 0..LINK_HOPS_MAX {
            if let Some(file) = self.files.get(&current) {
                return Ok(file);
            }
            match self.links.get(&current) {
                Some(target) => current.clone_from(target),
                None => return Err(self.invalid(format!("it has no file {path}"))),
            }
        }
        Err(self.invalid(format!("{path} is a loop of links")))
    }

    fn has(&self, path: &str) -> bool {
        self.file(path).is_ok()
    }

    /// The blob at `path`, checked against the digest its `blobs/sha256/<hex>` or `<hex>.json`
    /// name gives, if it has such a name.
    fn blob_at(&self, path: &str) -> Result<Blob, ImageError> {
        let file = self.file(path)?.clone();
        let name = normalise(path);
        let base = name
            .rsplit_once('/')
            .map_or(name.as_str(), |(_, base)| base);
        let in_blobs = name
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex);
        let named_json = (!name.contains('/'))
            .then(|| base.strip_suffix(".json").and_then(Digest::from_hex))
            .flatten();
        if let Some(expected) = in_blobs.or(named_json)
            && expected != file.digest
        {
            return Err(self.mismatch(&name, &expected, &file.digest));
        }
        Ok(Blob { name, file })
    }

    /// The blob a descriptor points to, checked against its digest and size.
    fn blob(&self, descriptor: &Descriptor) -> Result<Blob, ImageError> {
        let Some(expected) = Digest::parse(&descriptor.digest) else {
            let algorithm = descriptor.digest.split(':').next().unwrap_or_default();
            return Err(if algorithm == SHA256 || algorithm.is_empty() {
                self.invalid(format!(
                    "descriptor digest {:?} is malformed",
                    descriptor.digest
                ))
            } else {
                ImageError::Unsupported {
                    archive: self.archive.clone(),
                    what: format!(
                        "digest algorithm {algorithm:?} (of blob {})",
                        descriptor.digest
                    ),
                }
            });
        };
        let name = format!("blobs/{SHA256}/{}", expected.hex());
        let file = self.file(&name)?.clone();
        if file.digest != expected {
            return Err(self.mismatch(&name, &expected, &file.digest));
        }
        if let Some(size) = descriptor.size
            && size != file.size
        {
            return Err(self.invalid(format!(
                "blob {name} is {} bytes, its descriptor says {size}",
                file.size
            )));
        }
        Ok(Blob { name, file })
    }

    fn mismatch(&self, blob: &str, expected: &Digest, actual: &Digest) -> ImageError {
        ImageError::DigestMismatch {
            archive: self.archive.clone(),
            blob: blob.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// Parses the JSON document of a staged file.
    pub(crate) fn json<T: DeserializeOwned>(
        &self,
        name: &str,
        file: &StagedFile,
    ) -> Result<T, ImageError> {
        let bytes = read_limited(&file.path, JSON_MAX, name, &self.archive)?;
        serde_json::from_slice(&bytes)
            .map_err(|error| self.invalid(format!("{name} is not what it should be: {error}")))
    }

    /// The images of the archive, in the order it lists them.
    pub(crate) fn images(&self) -> Result<Vec<ArchivedImage>, ImageError> {
        if self.has("manifest.json") {
            self.docker_images()
        } else if self.has("index.json") {
            self.oci_images()
        } else {
            Err(self.invalid(
                "it is neither an OCI image layout (no index.json) nor a `docker save` archive \
                 (no manifest.json)"
                    .to_owned(),
            ))
        }
    }

    fn docker_images(&self) -> Result<Vec<ArchivedImage>, ImageError> {
        let manifest = self.file("manifest.json")?;
        let entries: Vec<DockerManifestEntry> = self.json("manifest.json", manifest)?;
        entries
            .into_iter()
            .map(|entry| {
                Ok(ArchivedImage {
                    config: self.blob_at(&entry.config)?,
                    manifest: None,
                    layers: entry
                        .layers
                        .iter()
                        .map(|layer| self.blob_at(layer))
                        .collect::<Result<_, _>>()?,
                    names: entry.repo_tags.unwrap_or_default(),
                })
            })
            .collect()
    }

    fn oci_images(&self) -> Result<Vec<ArchivedImage>, ImageError> {
        if let Ok(layout_file) = self.file("oci-layout") {
            let layout: OciLayout = self.json("oci-layout", layout_file)?;
            if !layout.image_layout_version.starts_with("1.") {
                return Err(ImageError::Unsupported {
                    archive: self.archive.clone(),
                    what: format!("OCI image layout version {:?}", layout.image_layout_version),
                });
            }
        }
        let index: OciIndex = self.json("index.json", self.file("index.json")?)?;
        let mut images = Vec::new();
        for descriptor in &index.manifests {
            let annotations = descriptor.annotations.as_ref();
            let name = annotations
                .and_then(|annotations| annotations.get(ANNOTATION_CONTAINERD_NAME))
                .or_else(|| {
                    annotations.and_then(|annotations| annotations.get(ANNOTATION_REF_NAME))
                })
                .filter(|name| !name.is_empty());
            let mut image = self.oci_image(descriptor, 0)?;
            image.names.extend(name.cloned());
            images.push(image);
        }
        Ok(images)
    }

    /// The image a descriptor of an index leads to: a manifest, or an index in which the
    /// host's platform is chosen.
    fn oci_image(
        &self,
        descriptor: &Descriptor,
        depth: usize,
    ) -> Result<ArchivedImage, ImageError> {
        if depth > INDEX_DEPTH_MAX {
            return Err(self.invalid(format!(
                "indexes nest more than {INDEX_DEPTH_MAX} deep at {}",
                descriptor.digest
            )));
        }
        let blob = self.blob(descriptor)?;
        let document: OciDocument = self.json(&blob.name, &blob.file)?;
        let media_type = document
            .media_type
            .as_deref()
            .or(descriptor.media_type.as_deref())
            .unwrap_or_default();
        let is_index = media_type == MEDIA_OCI_INDEX
            || media_type == MEDIA_DOCKER_LIST
            || (document.manifests.is_some() && document.config.is_none());
        if is_index {
            let manifests = document.manifests.unwrap_or_default();
            let chosen = manifests
                .iter()
                .filter(|child| child.platform.as_ref().is_none_or(Platform::is_host))
                .find(|child| {
                    Digest::parse(&child.digest)
                        .is_some_and(|digest| self.has(&format!("blobs/{SHA256}/{}", digest.hex())))
                })
                .ok_or_else(|| {
                    self.invalid(format!(
                        "index {} has no image for this node's platform, linux/{}",
                        blob.name,
                        host_architecture()
                    ))
                })?;
            return self.oci_image(chosen, depth + 1);
        }
        let config = document
            .config
            .ok_or_else(|| self.invalid(format!("manifest {} has no config", blob.name)))?;
        let config_type = config.media_type.as_deref().unwrap_or(MEDIA_OCI_CONFIG);
        if config_type != MEDIA_OCI_CONFIG && config_type != MEDIA_DOCKER_CONFIG {
            return Err(ImageError::Unsupported {
                archive: self.archive.clone(),
                what: format!(
                    "manifest {} is not a container image (its config is {config_type:?}), which",
                    blob.name
                ),
            });
        }
        Ok(ArchivedImage {
            config: self.blob(&config)?,
            layers: document
                .layers
                .unwrap_or_default()
                .iter()
                .map(|layer| self.blob(layer))
                .collect::<Result<_, _>>()?,
            manifest: Some(blob),
            names: Vec::new(),
        })
    }
}

/// Reads at most `limit` bytes of `path`, refusing larger files.
pub(crate) fn read_limited(
    path: &Path,
    limit: u64,
    name: &str,
    archive: &Path,
) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(|source| ImageError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ImageError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::InvalidArchive {
            archive: archive.to_owned(),
            reason: format!("{name} is larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// `a/./b//c/../d` → `a/b/d`, without a leading `/` or `./`. Only for looking paths up in the
/// archive: they never reach the filesystem.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// This node's CPU architecture in the OCI (Go) spelling.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `docker save`'s `manifest.json` entries.
#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A manifest or an index (told apart by their media type, or by which fields they have).
#[derive(Deserialize)]
struct OciDocument {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    annotations: Option<BTreeMap<String, String>>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

impl Platform {
    fn is_host(&self) -> bool {
        self.os == "linux" && self.architecture == host_architecture()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_normalise() {
        assert_eq!(normalise("./index.json"), "index.json");
        assert_eq!(normalise("/blobs//sha256/./ab"), "blobs/sha256/ab");
        assert_eq!(normalise("abc/../../def/layer.tar"), "def/layer.tar");
        assert_eq!(normalise("./"), "");
    }

    #[test]
    fn the_host_architecture_has_its_oci_name() {
        let arch = host_architecture();
        assert!(!arch.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "amd64");
        }
    }
}
