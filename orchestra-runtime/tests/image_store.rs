//! The image store against real tarballs, written here with the `tar` crate: OCI image layouts
//! and `docker save` archives, whiteouts, digests, unsafe paths, a busybox image from the host,
//! reopening, removal, the CRI `ImageService`, and broken archives.
#![cfg(feature = "image")]

mod support;

use std::error::Error;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use orchestra_core::container_runtime::{ImageService, RuntimeError};
use orchestra_runtime::image::{ImageError, ImageStore, resolve_user};
use serde_json::json;
use support::{
    Tar, TestDir, TestResult, busybox_archive, config_json, docker_save, gzip, hex,
    host_architecture, host_busybox, is_root, is_static, sha256, skip, write,
};
use tar::EntryType;

/// A layer blob as stored: its bytes and media type.
struct Blob {
    data: Vec<u8>,
    media_type: &'static str,
}

fn plain(layer: &[u8]) -> Blob {
    Blob {
        data: layer.to_vec(),
        media_type: "application/vnd.oci.image.layer.v1.tar",
    }
}

fn gzipped(layer: &[u8]) -> Result<Blob, Box<dyn Error>> {
    Ok(Blob {
        data: gzip(layer)?,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    })
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// An OCI image layout tarball of one image, named `ref_name` (if any).
struct OciLayout {
    config: Vec<u8>,
    layers: Vec<Blob>,
    ref_name: Option<String>,
}

impl OciLayout {
    fn manifest(&self) -> Vec<u8> {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", &self.config),
            "layers": self.layers.iter().map(|layer| descriptor(layer.media_type, &layer.data)).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    /// The tarball, with `tamper` applied to the blobs (by digest) before they are written.
    fn tarball_with(&self, tamper: impl Fn(&str, &mut Vec<u8>)) -> Result<Vec<u8>, Box<dyn Error>> {
        let manifest = self.manifest();
        let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
        if let Some(name) = &self.ref_name {
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        }
        let index = json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
        let mut tar = Tar::new()
            .file("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#)?
            .file("index.json", index.as_bytes())?
            .dir("blobs", 0o755)?
            .dir("blobs/sha256", 0o755)?;
        let blobs = std::iter::once(&manifest)
            .chain(std::iter::once(&self.config))
            .chain(self.layers.iter().map(|layer| &layer.data));
        for blob in blobs {
            let digest = sha256(blob);
            let mut data = blob.clone();
            tamper(&digest, &mut data);
            tar = tar.file(&format!("blobs/sha256/{}", hex(&digest)), &data)?;
        }
        tar.finish()
    }

    fn tarball(&self) -> Result<Vec<u8>, Box<dyn Error>> {
        self.tarball_with(|_, _| {})
    }
}

fn mode(path: &Path) -> Result<u32, Box<dyn Error>> {
    Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

fn names(dir: &Path) -> Result<Vec<String>, Box<dyn Error>> {
    let mut names = fs::read_dir(dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, std::io::Error>>()?;
    names.sort();
    Ok(names)
}

/// An image with two layers, the second deleting, making opaque, and adding.
/// An image's configuration, lower layer and upper layer.
type ImageParts = (Vec<u8>, Vec<u8>, Vec<u8>);

fn two_layer_image() -> Result<ImageParts, Box<dyn Error>> {
    let lower = Tar::new()
        .dir("etc", 0o755)?
        .file("etc/a.conf", b"a")?
        .file("etc/keep.conf", b"keep")?
        .dir("var", 0o755)?
        .dir("var/cache", 0o755)?
        .file("var/cache/old1", b"1")?
        .dir("var/cache/sub", 0o700)?
        .file("var/cache/sub/deep", b"deep")?
        .dir("bin", 0o755)?
        .file_with("bin/tool", b"#!/bin/sh\necho tool\n", 0o755, 0)?
        .file_with("bin/suid", b"x", 0o4755, 0)?
        .hardlink("bin/tool-again", "bin/tool")?
        .symlink("bin/sh", "/bin/tool")?
        .dir("ro", 0o555)?
        .file("ro/inside", b"ro")?
        .dir("gone", 0o755)?
        .file("gone/file", b"x")?
        // A directory its owner cannot even read, once unpacked.
        .dir("locked", 0o000)?
        .file("locked/secret", b"x")?
        .finish()?;
    let upper = Tar::new()
        .dir("etc", 0o755)?
        .raw(EntryType::Regular, "etc/.wh.a.conf", "", b"")?
        // A file of this layer, then its whiteout: a whiteout only hides the lower layers.
        .file("etc/new.conf", b"new")?
        .raw(EntryType::Regular, "etc/.wh.new.conf", "", b"")?
        .file_with("etc/secret", b"s", 0o640, 1234)?
        .dir("var/cache", 0o755)?
        // Before the opaque marker, and kept: it is this layer's.
        .file("var/cache/new", b"new")?
        .raw(EntryType::Regular, "var/cache/.wh..wh..opq", "", b"")?
        .file("ro/added", b"added")?
        .raw(EntryType::Regular, ".wh.gone", "", b"")?
        .raw(EntryType::Regular, "etc/.wh..wh.plnk", "", b"")?
        .file("./var/./log", b"log")?
        .finish()?;
    let config = config_json(
        &[&lower, &upper],
        json!({
            "Entrypoint": ["/bin/tool"],
            "Cmd": ["--verbose"],
            "Env": ["PATH=/usr/bin:/bin", "MODE=image"],
            "WorkingDir": "/var",
            "User": "1000:1000",
        }),
    );
    Ok((config, lower, upper))
}

#[test]
fn an_oci_layout_with_two_layers_unpacks_with_whiteouts_and_opaque_dirs() -> TestResult {
    let dir = TestDir::new()?;
    let (config, lower, upper) = two_layer_image()?;
    let layout = OciLayout {
        config: config.clone(),
        layers: vec![plain(&lower), gzipped(&upper)?],
        ref_name: Some("example.com/tools/toolbox:1.0".into()),
    };
    let archive = write(dir.path(), "toolbox.tar", &layout.tarball()?)?;
    let store = ImageStore::open(dir.path().join("store"))?;

    let images = store.import(&archive)?;
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.id, sha256(&config));
    assert_eq!(image.repo_tags, ["example.com/tools/toolbox:1.0"]);
    assert!(image.size_bytes > 0);

    let rootfs = store
        .rootfs("example.com/tools/toolbox:1.0")
        .ok_or("no rootfs")?;
    assert_eq!(rootfs, dir.path().join("store/rootfs").join(hex(&image.id)));
    assert_eq!(
        names(&rootfs.join("etc"))?,
        ["keep.conf", "new.conf", "secret"]
    );
    assert_eq!(names(&rootfs.join("var/cache"))?, ["new"]);
    assert_eq!(fs::read(rootfs.join("var/log"))?, b"log");
    assert_eq!(names(&rootfs.join("ro"))?, ["added", "inside"]);
    assert!(!rootfs.join("gone").exists());
    assert_eq!(
        names(&rootfs)?,
        ["bin", "etc", "locked", "ro", "var"],
        "no whiteout entry is left"
    );

    assert_eq!(mode(&rootfs.join("bin/tool"))?, 0o755);
    assert_eq!(mode(&rootfs.join("bin/suid"))?, 0o4755);
    assert_eq!(mode(&rootfs.join("etc/secret"))?, 0o640);
    assert_eq!(mode(&rootfs.join("ro"))?, 0o555);
    assert_eq!(mode(&rootfs.join("locked"))?, 0o000);
    assert_eq!(mode(&rootfs.join("var/cache"))?, 0o755);
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh"))?,
        PathBuf::from("/bin/tool")
    );
    let tool = fs::metadata(rootfs.join("bin/tool"))?;
    let again = fs::metadata(rootfs.join("bin/tool-again"))?;
    assert_eq!((tool.dev(), tool.ino()), (again.dev(), again.ino()));
    assert_eq!(tool.mtime(), 1_700_000_000);
    let secret = fs::metadata(rootfs.join("etc/secret"))?;
    if is_root() {
        assert_eq!((secret.uid(), secret.gid()), (1234, 1234));
    } else {
        assert_eq!(secret.uid(), rustix::process::geteuid().as_raw());
    }
    // The unpacked tool runs.
    let output = std::process::Command::new(rootfs.join("bin/tool")).output()?;
    assert_eq!(output.stdout, b"tool\n");

    let image_config = store
        .config("example.com/tools/toolbox:1.0")?
        .ok_or("no config")?;
    assert_eq!(image_config.entrypoint, ["/bin/tool"]);
    assert_eq!(image_config.cmd, ["--verbose"]);
    assert_eq!(
        image_config.env,
        [
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("MODE".to_owned(), "image".to_owned()),
        ]
    );
    assert_eq!(image_config.working_dir, Some(PathBuf::from("/var")));
    assert_eq!(image_config.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        image_config.process_args(&[], &[]),
        ["/bin/tool", "--verbose"]
    );

    // Blobs are kept by digest, and the manifest digest finds the image too.
    let blobs = names(&dir.path().join("store/blobs/sha256"))?;
    assert!(blobs.contains(&hex(&sha256(&lower)).to_owned()));
    assert!(blobs.contains(&hex(&sha256(&layout.layers[1].data)).to_owned()));
    let pinned = format!("example.com/tools/toolbox@{}", sha256(&layout.manifest()));
    assert_eq!(store.resolve(&pinned)?, Some(image.id.clone()));
    // Nothing is left in staging.
    assert!(names(&dir.path().join("store/tmp"))?.is_empty());
    Ok(())
}

#[test]
fn an_index_of_platforms_yields_this_nodes_image() -> TestResult {
    let dir = TestDir::new()?;
    let layer = Tar::new().file("hello", b"native")?.finish()?;
    let config = config_json(&[&layer], json!({"Cmd": ["/hello"]}));
    let image = OciLayout {
        config: config.clone(),
        layers: vec![plain(&layer)],
        ref_name: None,
    };
    let manifest = image.manifest();
    let mut platform_entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    platform_entry["platform"] = json!({"os": "linux", "architecture": host_architecture()});
    // Another platform's manifest, not in the layout (a partial export).
    let mut other = descriptor("application/vnd.oci.image.manifest.v1+json", b"elsewhere");
    other["platform"] = json!({"os": "linux", "architecture": "not-this-one"});
    let inner_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [other, platform_entry],
    })
    .to_string()
    .into_bytes();
    let mut top = descriptor("application/vnd.oci.image.index.v1+json", &inner_index);
    top["annotations"] = json!({
        "io.containerd.image.name": "registry.k8s.io/pause:3.10",
        "org.opencontainers.image.ref.name": "3.10",
    });
    let index = json!({"schemaVersion": 2, "manifests": [top]}).to_string();
    let mut tar = Tar::new()
        .file("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#)?
        .file("index.json", index.as_bytes())?;
    for blob in [&inner_index, &manifest, &config, &layer] {
        tar = tar.file(&format!("blobs/sha256/{}", hex(&sha256(blob))), blob)?;
    }
    let archive = write(dir.path(), "pause.tar", &tar.finish()?)?;
    let store = ImageStore::open(dir.path().join("store"))?;
    let images = store.import(&archive)?;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, sha256(&config));
    assert_eq!(images[0].repo_tags, ["registry.k8s.io/pause:3.10"]);
    let rootfs = store
        .rootfs("registry.k8s.io/pause:3.10")
        .ok_or("no rootfs")?;
    assert_eq!(fs::read(rootfs.join("hello"))?, b"native");
    Ok(())
}

#[test]
fn a_docker_save_archive_with_gzip_layers_imports() -> TestResult {
    let dir = TestDir::new()?;
    let (config, lower, upper) = two_layer_image()?;
    let layers = vec![gzip(&lower)?, gzip(&upper)?];
    let archive_bytes = docker_save(
        &config,
        &layers,
        &["toolbox:1.0", "example.com/team/toolbox:v1"],
    )?;
    let archive = write(dir.path(), "toolbox.tar", &archive_bytes)?;
    let store = ImageStore::open(dir.path().join("store"))?;
    let images = store.import(&archive)?;
    assert_eq!(images.len(), 1);
    let id = sha256(&config);
    assert_eq!(images[0].id, id);
    assert_eq!(
        images[0].repo_tags,
        [
            "docker.io/library/toolbox:1.0",
            "example.com/team/toolbox:v1"
        ]
    );
    let rootfs = store.rootfs("toolbox:1.0").ok_or("no rootfs")?;
    assert_eq!(
        names(&rootfs.join("etc"))?,
        ["keep.conf", "new.conf", "secret"]
    );
    assert_eq!(names(&rootfs.join("var/cache"))?, ["new"]);

    // Every spelling finds it; other tags do not.
    let hex_id = hex(&id).to_owned();
    for reference in [
        "toolbox:1.0",
        "docker.io/library/toolbox:1.0",
        "library/toolbox:1.0",
        "example.com/team/toolbox:v1",
        id.as_str(),
        hex_id.as_str(),
    ] {
        assert_eq!(store.resolve(reference)?, Some(id.clone()), "{reference}");
        assert_eq!(
            store.status(reference)?.map(|image| image.id),
            Some(id.clone())
        );
    }
    assert_eq!(store.resolve("toolbox")?, None);
    assert_eq!(store.resolve("toolbox:2.0")?, None);
    assert!(matches!(
        store.status("Not A Reference"),
        Err(ImageError::InvalidReference { .. })
    ));
    assert_eq!(store.rootfs("Not A Reference"), None);

    // The whole archive gzip-compressed (`docker save | gzip`) imports the same image.
    let shared = Tar::new()
        .file(&format!("{}.json", hex(&sha256(&config))), &config)?
        .dir("0", 0o755)?
        .file("0/layer.tar", &layers[0])?
        .dir("1", 0o755)?
        .file("1/layer.tar", &layers[1])?
        .file(
            "manifest.json",
            json!([{
                "Config": format!("{}.json", hex(&sha256(&config))),
                "RepoTags": ["toolbox:latest"],
                "Layers": ["0/layer.tar", "1/layer.tar"],
            }])
            .to_string()
            .as_bytes(),
        )?
        .finish()?;
    let compressed = write(dir.path(), "toolbox.tar.gz", &gzip(&shared)?)?;
    let again = store.import(&compressed)?;
    assert_eq!(again[0].id, id);
    assert_eq!(store.resolve("toolbox")?, Some(id.clone()));
    assert_eq!(store.list().len(), 1);

    // A layer that is a link to another (`docker save` shares identical layers so) is
    // followed.
    let linked_config = config_json(&[&lower, &lower], json!({"Cmd": ["/bin/tool"]}));
    let linked = Tar::new()
        .file("config.json", &linked_config)?
        .dir("a", 0o755)?
        .file("a/layer.tar", &lower)?
        .dir("b", 0o755)?
        .symlink("b/layer.tar", "../a/layer.tar")?
        .file(
            "manifest.json",
            json!([{"Config": "config.json", "RepoTags": ["linked:1"], "Layers": ["a/layer.tar", "b/layer.tar"]}])
                .to_string()
                .as_bytes(),
        )?
        .finish()?;
    let linked_archive = write(dir.path(), "linked.tar", &linked)?;
    let linked_images = store.import(&linked_archive)?;
    assert_eq!(linked_images[0].id, sha256(&linked_config));
    assert!(
        store
            .rootfs("linked:1")
            .ok_or("no rootfs")?
            .join("bin/tool")
            .is_file()
    );
    Ok(())
}

#[test]
fn a_busybox_image_from_the_host_runs_from_its_rootfs() -> TestResult {
    let Some(busybox) = host_busybox() else {
        return skip("no /bin/busybox on this host (Debian: busybox-static)");
    };
    let dir = TestDir::new()?;
    let archive = busybox_archive(&busybox, dir.path())?;
    let store = ImageStore::open(dir.path().join("store"))?;
    store.import(&archive)?;

    let rootfs = store.rootfs("busybox:latest").ok_or("no rootfs")?;
    assert_eq!(fs::read(rootfs.join("bin/busybox"))?, busybox);
    assert_eq!(mode(&rootfs.join("bin/busybox"))?, 0o755);
    assert_eq!(mode(&rootfs.join("tmp"))?, 0o1777);
    let config = store.config("busybox")?.ok_or("no config")?;
    assert_eq!(config.process_args(&[], &[]), ["sh"]);
    let user = resolve_user(&rootfs, config.user.as_deref().unwrap_or_default())?;
    assert_eq!((user.uid, user.gid), (65534, 65534));

    // It runs from the root filesystem.
    let output = std::process::Command::new(rootfs.join("bin/busybox"))
        .args(["echo", "hello from the image"])
        .output()?;
    assert_eq!(output.stdout, b"hello from the image\n");

    // And, as root with a static busybox, inside it.
    if !is_root() || !is_static(&busybox) {
        eprintln!("not running busybox under chroot (needs root and a static busybox)");
        return Ok(());
    }
    let output = std::process::Command::new("chroot")
        .arg(&rootfs)
        .args([
            "/bin/sh",
            "-c",
            "echo $((6 * 7)) > /tmp/answer && cat /tmp/answer",
        ])
        .output()?;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"42\n");
    Ok(())
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() -> TestResult {
    let dir = TestDir::new()?;
    let store = ImageStore::open(dir.path().join("store"))?;
    let (config, lower, upper) = two_layer_image()?;
    let layout = OciLayout {
        config: config.clone(),
        layers: vec![plain(&lower), gzipped(&upper)?],
        ref_name: Some("tampered".into()),
    };
    let lower_digest = sha256(&lower);
    let tampered = layout.tarball_with(|digest, data| {
        if digest == lower_digest {
            data[600] ^= 1;
        }
    })?;
    let archive = write(dir.path(), "tampered.tar", &tampered)?;
    match store.import(&archive) {
        Err(ImageError::DigestMismatch { blob, expected, .. }) => {
            assert_eq!(blob, format!("blobs/sha256/{}", hex(&lower_digest)));
            assert_eq!(expected, lower_digest);
        }
        other => return Err(format!("expected a digest mismatch, got {other:?}").into()),
    }

    // A docker-save layer that is not the one the configuration's diff_ids name.
    let other_layer = Tar::new().file("other", b"other")?.finish()?;
    let wrong = docker_save(&config, &[lower.clone(), other_layer], &["wrong:1"])?;
    let archive = write(dir.path(), "wrong.tar", &wrong)?;
    match store.import(&archive) {
        Err(error @ ImageError::DigestMismatch { .. }) => {
            assert!(error.to_string().contains("1/layer.tar"), "{error}");
        }
        other => return Err(format!("expected a diff_id mismatch, got {other:?}").into()),
    }

    // A configuration whose `<hex>.json` name is not its digest.
    let misnamed = Tar::new()
        .file(&format!("{}.json", hex(&sha256(b"something else"))), &config)?
        .file(
            "manifest.json",
            json!([{"Config": format!("{}.json", hex(&sha256(b"something else"))), "RepoTags": [], "Layers": []}])
                .to_string()
                .as_bytes(),
        )?
        .finish()?;
    let archive = write(dir.path(), "misnamed.tar", &misnamed)?;
    assert!(matches!(
        store.import(&archive),
        Err(ImageError::DigestMismatch { .. })
    ));

    // A descriptor whose size is wrong.
    let manifest = layout.manifest();
    let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    entry["size"] = json!(manifest.len() + 1);
    let sized = Tar::new()
        .file(
            "index.json",
            json!({"schemaVersion": 2, "manifests": [entry]})
                .to_string()
                .as_bytes(),
        )?
        .file(
            &format!("blobs/sha256/{}", hex(&sha256(&manifest))),
            &manifest,
        )?
        .finish()?;
    let archive = write(dir.path(), "sized.tar", &sized)?;
    assert!(matches!(
        store.import(&archive),
        Err(ImageError::InvalidArchive { .. })
    ));

    assert!(store.list().is_empty());
    assert!(names(&dir.path().join("store/rootfs"))?.is_empty());
    assert!(names(&dir.path().join("store/tmp"))?.is_empty());
    Ok(())
}

#[test]
fn entries_escaping_the_rootfs_are_refused_and_nothing_is_written_outside() -> TestResult {
    let dir = TestDir::new()?;
    // Deep enough that `../../../../../x` from a root filesystem being unpacked lands in `a/`.
    let store_dir = dir.path().join("a/b/store");
    let store = ImageStore::open(&store_dir)?;
    let outside = dir.path().join("outside");
    fs::create_dir(&outside)?;
    fs::write(outside.join("victim"), "still here")?;
    let outside_str = outside.to_str().ok_or("non-UTF-8 temp dir")?;
    let escape_name = format!("orchestra-image-store-test-escape-{}", std::process::id());

    // A layer of one entry, written as given; one whose entry follows a symlink `link` to
    // `outside`.
    type Layers = Vec<Vec<u8>>;
    let raw = |kind, name: &str, link: &str, data: &[u8]| -> Result<Layers, Box<dyn Error>> {
        Ok(vec![Tar::new().raw(kind, name, link, data)?.finish()?])
    };
    let after_link = |kind, name: &str, link: &str| -> Result<Layers, Box<dyn Error>> {
        let tar = Tar::new().symlink("link", outside_str)?;
        Ok(vec![tar.raw(kind, name, link, b"")?.finish()?])
    };
    let cases: Vec<(&str, Layers)> = vec![
        ("parent", raw(EntryType::Regular, "../x", "", b"x")?),
        (
            "deep parent",
            raw(EntryType::Regular, "../../../../../x", "", b"x")?,
        ),
        (
            "absolute",
            raw(EntryType::Regular, &format!("/etc/{escape_name}"), "", b"x")?,
        ),
        (
            "absolute in tmp",
            raw(EntryType::Regular, &format!("{outside_str}/x"), "", b"x")?,
        ),
        (
            "through a symlink",
            vec![
                Tar::new()
                    .symlink("link", outside_str)?
                    .file("link/x", b"x")?
                    .finish()?,
            ],
        ),
        (
            "through a relative symlink",
            vec![
                Tar::new()
                    .symlink("up", "../../../../../..")?
                    .file("up/x", b"x")?
                    .finish()?,
            ],
        ),
        (
            "through a symlink of a lower layer",
            vec![
                Tar::new().symlink("etc", outside_str)?.finish()?,
                Tar::new().file("etc/x", b"x")?.finish()?,
            ],
        ),
        (
            "through a directory replaced by a symlink",
            vec![
                Tar::new().dir("d", 0o755)?.finish()?,
                Tar::new()
                    .symlink("d", outside_str)?
                    .dir("d/sub", 0o755)?
                    .finish()?,
            ],
        ),
        (
            "a whiteout through a symlink",
            after_link(EntryType::Regular, "link/.wh.victim", "")?,
        ),
        (
            "an opaque whiteout through a symlink",
            after_link(EntryType::Regular, "link/.wh..wh..opq", "")?,
        ),
        (
            "a whiteout of the parent",
            raw(EntryType::Regular, "a/.wh...", "", b"")?,
        ),
        (
            "a hard link outside",
            raw(
                EntryType::Link,
                "x",
                &format!("../../../../../../{outside_str}/victim"),
                b"",
            )?,
        ),
        (
            "an absolute hard link",
            raw(EntryType::Link, "x", &format!("{outside_str}/victim"), b"")?,
        ),
        (
            "a hard link through a symlink",
            after_link(EntryType::Link, "x", "link/victim")?,
        ),
    ];
    for (case, layers) in &cases {
        let config = config_json(
            &layers.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            json!({}),
        );
        let archive = write(
            dir.path(),
            "escape.tar",
            &docker_save(&config, layers, &["escape:1"])?,
        )?;
        match store.import(&archive) {
            Err(ImageError::UnsafePath { .. }) => {}
            other => return Err(format!("{case}: expected an unsafe path, got {other:?}").into()),
        }
        assert_eq!(names(&outside)?, ["victim"], "{case}");
        assert_eq!(
            fs::read_to_string(outside.join("victim"))?,
            "still here",
            "{case}"
        );
        assert_eq!(names(&dir.path().join("a"))?, ["b"], "{case}");
        assert_eq!(
            names(&store_dir.join("tmp"))?,
            Vec::<String>::new(),
            "{case}"
        );
        assert!(!Path::new("/etc").join(&escape_name).exists(), "{case}");
        assert!(store.list().is_empty(), "{case}");
    }

    // A link may point anywhere: it is only never written through.
    let fine = Tar::new()
        .symlink("etc", outside_str)?
        .symlink("up", "../../..")?
        .finish()?;
    let config = config_json(&[&fine], json!({}));
    let archive = write(
        dir.path(),
        "fine.tar",
        &docker_save(&config, &[fine], &["fine:1"])?,
    )?;
    store.import(&archive)?;
    assert_eq!(names(&outside)?, ["victim"]);
    Ok(())
}

#[test]
fn a_reopened_store_finds_its_images_and_a_corrupt_index_is_named() -> TestResult {
    let dir = TestDir::new()?;
    let store_dir = dir.path().join("store");
    let (config, lower, upper) = two_layer_image()?;
    let archive = write(
        dir.path(),
        "toolbox.tar",
        &docker_save(&config, &[lower, upper], &["toolbox:1.0"])?,
    )?;
    let listed = {
        let store = ImageStore::open(&store_dir)?;
        store.import(&archive)?;
        store.list()
    };
    let store = ImageStore::open(&store_dir)?;
    assert_eq!(store.list(), listed);
    assert!(store.rootfs("toolbox:1.0").is_some());
    assert_eq!(
        store.config("toolbox:1.0")?.ok_or("no config")?.cmd,
        ["--verbose"]
    );
    // Importing it again changes nothing.
    assert_eq!(store.import(&archive)?, listed);
    assert_eq!(store.list(), listed);
    drop(store);

    let index = store_dir.join("index.json");
    let good = fs::read(&index)?;
    fs::write(&index, &good[..good.len() / 2])?;
    match ImageStore::open(&store_dir) {
        Err(error @ ImageError::CorruptIndex { .. }) => {
            assert!(
                error.to_string().contains(&index.display().to_string()),
                "{error}"
            );
        }
        other => return Err(format!("expected a corrupt index, got {other:?}").into()),
    }
    // Nothing was deleted: with the index back, everything is found again.
    assert!(!names(&store_dir.join("blobs/sha256"))?.is_empty());
    assert_eq!(names(&store_dir.join("rootfs"))?.len(), 1);
    fs::write(&index, &good)?;
    assert_eq!(ImageStore::open(&store_dir)?.list(), listed);
    Ok(())
}

#[test]
fn removing_drops_the_tag_then_the_image_and_its_unshared_files() -> TestResult {
    let dir = TestDir::new()?;
    let store_dir = dir.path().join("store");
    let store = ImageStore::open(&store_dir)?;
    let base = Tar::new().file("base", b"base")?.finish()?;
    let top = Tar::new().file("top", b"top")?.finish()?;
    let config_a = config_json(&[&base], json!({"Cmd": ["a"]}));
    let config_b = config_json(&[&base, &top], json!({"Cmd": ["b"]}));
    let archive_a = write(
        dir.path(),
        "a.tar",
        &docker_save(&config_a, std::slice::from_ref(&base), &["a:1", "a:latest"])?,
    )?;
    let archive_b = write(
        dir.path(),
        "b.tar",
        &docker_save(&config_b, &[base.clone(), top], &["b:1"])?,
    )?;
    let id_a = store.import(&archive_a)?[0].id.clone();
    let id_b = store.import(&archive_b)?[0].id.clone();
    assert_eq!(store.list().len(), 2);

    store.remove("a:1")?;
    let a = store.status("a")?.ok_or("a is gone with a tag left")?;
    assert_eq!(a.repo_tags, ["docker.io/library/a:latest"]);
    assert!(store.rootfs(&id_a).is_some());

    store.remove("docker.io/library/a:latest")?;
    assert_eq!(store.status(&id_a)?, None);
    assert_eq!(names(&store_dir.join("rootfs"))?, [hex(&id_b)]);
    // The shared base layer stays for b; a's configuration goes.
    let blobs = names(&store_dir.join("blobs/sha256"))?;
    assert!(blobs.contains(&hex(&sha256(&base)).to_owned()));
    assert!(!blobs.contains(&hex(&id_a).to_owned()));
    assert_eq!(
        fs::read(store.rootfs("b:1").ok_or("no rootfs")?.join("base"))?,
        b"base"
    );

    // Removing what is not there succeeds; an id removes the image with its tags.
    store.remove("a:1")?;
    store.remove(&format!("sha256:{}", "0".repeat(64)))?;
    store.remove(&id_b)?;
    assert!(store.list().is_empty());
    assert!(names(&store_dir.join("rootfs"))?.is_empty());
    assert!(names(&store_dir.join("blobs/sha256"))?.is_empty());
    assert!(names(&store_dir.join("tmp"))?.is_empty());
    // And it is so after reopening.
    assert!(ImageStore::open(&store_dir)?.list().is_empty());
    Ok(())
}

#[test]
fn a_tag_imported_again_moves_to_the_new_image() -> TestResult {
    let dir = TestDir::new()?;
    let store = ImageStore::open(dir.path().join("store"))?;
    let v1 = Tar::new().file("version", b"1")?.finish()?;
    let v2 = Tar::new().file("version", b"2")?.finish()?;
    let config_1 = config_json(&[&v1], json!({}));
    let config_2 = config_json(&[&v2], json!({}));
    let first = store.import(&write(
        dir.path(),
        "1.tar",
        &docker_save(&config_1, &[v1], &["app"])?,
    )?)?;
    let second = store.import(&write(
        dir.path(),
        "2.tar",
        &docker_save(&config_2, &[v2], &["app"])?,
    )?)?;
    assert_eq!(store.resolve("app")?, Some(second[0].id.clone()));
    assert_eq!(
        fs::read(store.rootfs("app").ok_or("no rootfs")?.join("version"))?,
        b"2"
    );
    // The first stays, untagged, reachable by its id.
    let old = store.status(&first[0].id)?.ok_or("the old image is gone")?;
    assert!(old.repo_tags.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_store_serves_cris_image_service() -> TestResult {
    let dir = TestDir::new()?;
    let store = ImageStore::open(dir.path().join("store"))?;
    let service: &dyn ImageService = &store;
    let (config, lower, upper) = two_layer_image()?;
    let archive = write(
        dir.path(),
        "toolbox.tar",
        &docker_save(&config, &[lower, upper], &["toolbox"])?,
    )?;
    let imported = service.import_image(&archive).await?;
    assert_eq!(imported[0].repo_tags, ["docker.io/library/toolbox:latest"]);
    assert_eq!(service.list_images().await?, imported);
    assert_eq!(
        service.image_status("toolbox").await?,
        Some(imported[0].clone())
    );
    assert_eq!(service.image_status("nothing:here").await?, None);

    match service.pull_image("nginx:1.27").await {
        Err(RuntimeError::Unsupported(message)) => {
            assert!(message.contains("no image registry"), "{message}");
            assert!(message.contains("import"), "{message}");
        }
        other => return Err(format!("expected an unsupported pull, got {other:?}").into()),
    }
    let missing = dir.path().join("missing.tar");
    assert!(matches!(
        service.import_image(&missing).await,
        Err(RuntimeError::InvalidArgument { .. })
    ));

    service.remove_image("toolbox").await?;
    service.remove_image("toolbox").await?;
    assert!(service.list_images().await?.is_empty());
    Ok(())
}

/// A small deterministic generator for the broken archives.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn broken_archives_are_errors_never_panics() -> TestResult {
    let dir = TestDir::new()?;
    let store_dir = dir.path().join("store");
    let store = ImageStore::open(&store_dir)?;
    let (config, lower, upper) = two_layer_image()?;
    let good = docker_save(&config, &[lower.clone(), gzip(&upper)?], &["broken:1"])?;
    let path = dir.path().join("broken.tar");

    // Nothing, garbage, and JSON where a tar should be.
    let mut random = Lcg(42);
    let garbage: Vec<u8> = (0..10_000).map(|_| random.next() as u8).collect();
    for (case, bytes) in [
        ("empty", Vec::new()),
        ("garbage", garbage.clone()),
        ("short garbage", garbage[..100].to_vec()),
        ("zeros", vec![0; 4096]),
        ("gzip magic", vec![0x1f, 0x8b, 0, 0, 0]),
        ("json", b"{\"manifests\": []}".to_vec()),
        ("gzip of garbage", gzip(&garbage)?),
        ("an empty tar", Tar::new().finish()?),
    ] {
        fs::write(&path, &bytes)?;
        assert!(store.import(&path).is_err(), "{case}");
    }
    assert!(store.import(&dir.path().join("missing.tar")).is_err());

    // Every truncation before the end of `manifest.json` (the last entry) is an error.
    let last_needed = good.len() - 1024 - 512;
    let mut cut = 0;
    while cut < last_needed {
        fs::write(&path, &good[..cut])?;
        assert!(
            store.import(&path).is_err(),
            "cut at {cut} of {}",
            good.len()
        );
        cut += if cut < 4096 { 97 } else { 509 };
    }
    let gzipped = gzip(&good)?;
    // (The compressed `manifest.json` ends in the last few dozen bytes.)
    for cut in (0..gzipped.len().saturating_sub(300)).step_by(61) {
        fs::write(&path, &gzipped[..cut])?;
        assert!(store.import(&path).is_err(), "gzip cut at {cut}");
    }

    // Flipped bytes: an error or (where the byte does not matter) an import, never a panic.
    for _ in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..=(random.next() % 3) {
            let at = (random.next() as usize) % bytes.len();
            bytes[at] ^= 1 << (random.next() % 8);
        }
        fs::write(&path, &bytes)?;
        let _ = store.import(&path);
    }

    // Garbage and truncated layers inside a well-formed archive.
    for (case, layer) in [
        ("garbage layer", garbage.clone()),
        ("truncated layer", lower[..lower.len() / 2].to_vec()),
        ("truncated gzip layer", gzip(&lower)?[..200].to_vec()),
        ("zstd layer", vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]),
    ] {
        let config = config_json(&[&lower], json!({}));
        fs::write(&path, docker_save(&config, &[layer], &["bad-layer:1"])?)?;
        match store.import(&path) {
            Err(
                ImageError::InvalidLayer { .. }
                | ImageError::Unsupported { .. }
                | ImageError::DigestMismatch { .. },
            ) => {}
            other => return Err(format!("{case}: {other:?}").into()),
        }
    }

    // Malformed documents.
    for (case, manifest) in [
        ("manifest not a list", "{}".to_owned()),
        (
            "missing config",
            json!([{"Config": "nope.json", "Layers": []}]).to_string(),
        ),
        (
            "bad tag",
            json!([{"Config": "c.json", "RepoTags": ["UPPER:case"], "Layers": []}]).to_string(),
        ),
    ] {
        let archive = Tar::new()
            .file("c.json", &config_json(&[], json!({})))?
            .file("manifest.json", manifest.as_bytes())?
            .finish()?;
        fs::write(&path, archive)?;
        assert!(
            matches!(store.import(&path), Err(ImageError::InvalidArchive { .. })),
            "{case}"
        );
    }
    let looped = Tar::new()
        .symlink("manifest.json", "other.json")?
        .symlink("other.json", "manifest.json")?
        .finish()?;
    fs::write(&path, looped)?;
    assert!(store.import(&path).is_err());

    // Whatever failed left nothing behind but what succeeded.
    assert!(names(&store_dir.join("tmp"))?.is_empty());
    for image in store.list() {
        assert!(store.rootfs(&image.id).is_some());
    }
    Ok(())
}
