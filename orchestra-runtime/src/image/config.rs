//! An image's configuration: what a container of it runs by default, and how a container's
//! `command`, `args`, `env` and `workingDir` override it (see [`ImageConfig`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use orchestra_core::container_runtime::{ContainerConfig, RuntimeError};
use serde::Deserialize;

use super::digest::Digest;

/// What an image says about running it (the `config` of the OCI image configuration, with the
/// platform it is for).
///
/// A pod's container overrides it as Kubernetes defines:
///
/// | container `command` | container `args` | the process runs           |
/// |---------------------|------------------|----------------------------|
/// | empty               | empty            | image `Entrypoint` + `Cmd` |
/// | empty               | set              | image `Entrypoint` + args  |
/// | set                 | either           | command + args             |
///
/// The environment is the image's, with the container's variables replacing those of the same
/// name and adding the others; the working directory is the container's, else the image's, else
/// `/`.
///
/// # Examples
///
/// ```
/// use orchestra_runtime::image::ImageConfig;
///
/// let image = ImageConfig {
///     entrypoint: vec!["/bin/busybox".into()],
///     cmd: vec!["sh".into()],
///     ..Default::default()
/// };
/// // No command and no args: the image's entrypoint and cmd.
/// assert_eq!(image.process_args(&[], &[]), ["/bin/busybox", "sh"]);
/// // Args only: they replace Cmd.
/// assert_eq!(image.process_args(&[], &["echo".into(), "hi".into()]), ["/bin/busybox", "echo", "hi"]);
/// // A command replaces both.
/// assert_eq!(image.process_args(&["/bin/true".into()], &[]), ["/bin/true"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The executable and its leading arguments (`Entrypoint`), replaced by a container's
    /// `command`.
    pub entrypoint: Vec<String>,
    /// The default arguments (`Cmd`), replaced by a container's `args` or `command`.
    pub cmd: Vec<String>,
    /// The environment (`Env`), in order, each `NAME=value` split at its first `=`.
    pub env: Vec<(String, String)>,
    /// The working directory (`WorkingDir`), if the image sets one.
    pub working_dir: Option<PathBuf>,
    /// The user to run as (`User`): `name`, `uid`, `name:group` or `uid:gid`, resolved in the
    /// image's root filesystem by [`resolve_user`](super::resolve_user).
    pub user: Option<String>,
    /// The signal that asks a container of the image to stop (`StopSignal`), if not SIGTERM.
    pub stop_signal: Option<String>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
    /// The operating system it is for (`linux`).
    pub os: String,
    /// The CPU architecture it is for, in Go's names (`amd64`, `arm64`).
    pub architecture: String,
}

/// How to start a container's process: its image's configuration with the container's
/// overrides applied (see [`ImageConfig::process`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerProcess {
    /// The executable (looked up in the root filesystem's `PATH` when it has no `/`) and its
    /// arguments.
    pub args: Vec<String>,
    /// The environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory, inside the root filesystem.
    pub working_dir: PathBuf,
    /// The image's user, if it names one (see [`resolve_user`](super::resolve_user)).
    pub user: Option<String>,
}

impl ImageConfig {
    /// The process's arguments (`argv`) for a container with `command` and `args`, by
    /// Kubernetes' rules (see [`ImageConfig`]). Empty when neither the container nor the
    /// image names anything to run.
    pub fn process_args(&self, command: &[String], args: &[String]) -> Vec<String> {
        match (command.is_empty(), args.is_empty()) {
            (false, _) => command.iter().chain(args).cloned().collect(),
            (true, false) => self.entrypoint.iter().chain(args).cloned().collect(),
            (true, true) => self.entrypoint.iter().chain(&self.cmd).cloned().collect(),
        }
    }

    /// The image's environment with `overrides` applied: a variable of the same name replaces
    /// the image's in place, the others are added in order.
    pub fn merged_env(&self, overrides: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (name, value) in overrides {
            match env.iter_mut().find(|(existing, _)| existing == name) {
                Some(entry) => entry.1.clone_from(value),
                None => env.push((name.clone(), value.clone())),
            }
        }
        env
    }

    /// How to start `container`'s process from this image (see [`ImageConfig`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::InvalidArgument`] on `command` when neither the container nor the image
    /// names anything to run.
    pub fn process(&self, container: &ContainerConfig) -> Result<ContainerProcess, RuntimeError> {
        let args = self.process_args(&container.command, &container.args);
        if args.is_empty() {
            return Err(RuntimeError::InvalidArgument {
                field: "command".to_owned(),
                reason: format!(
                    "neither the container nor its image {:?} names a command to run (the image \
                     has no Entrypoint and no Cmd)",
                    container.image
                ),
            });
        }
        let working_dir = container
            .working_dir
            .clone()
            .or_else(|| self.working_dir.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(ContainerProcess {
            args,
            env: self.merged_env(&container.env),
            working_dir,
            user: self.user.clone(),
        })
    }

    /// Reads an image configuration blob; returns it and the digests of its layers' uncompressed
    /// tars (`rootfs.diff_ids`). The error says what is wrong, for the caller to name the blob.
    pub(crate) fn parse(json: &[u8]) -> Result<(ImageConfig, Vec<Digest>), String> {
        let raw: RawImage = serde_json::from_slice(json).map_err(|error| error.to_string())?;
        let runtime = raw.config.unwrap_or_default();
        let env = runtime
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (entry, String::new()),
            })
            .collect();
        let diff_ids = raw
            .rootfs
            .map(|rootfs| rootfs.diff_ids)
            .unwrap_or_default()
            .iter()
            .map(|id| {
                Digest::parse(id)
                    .ok_or_else(|| format!("rootfs.diff_ids holds {id:?}, not a sha256 digest"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = ImageConfig {
            entrypoint: runtime.entrypoint.unwrap_or_default(),
            cmd: runtime.cmd.unwrap_or_default(),
            env,
            working_dir: runtime
                .working_dir
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
            user: runtime.user.filter(|user| !user.is_empty()),
            stop_signal: runtime.stop_signal.filter(|signal| !signal.is_empty()),
            labels: runtime.labels.unwrap_or_default(),
            os: raw.os.unwrap_or_default(),
            architecture: raw.architecture.unwrap_or_default(),
        };
        Ok((config, diff_ids))
    }
}

/// The parts of the OCI image configuration the store reads (unknown fields are ignored, and
/// `null` stands for absent as Docker writes it).
#[derive(Deserialize)]
struct RawImage {
    architecture: Option<String>,
    os: Option<String>,
    config: Option<RawRuntimeConfig>,
    rootfs: Option<RawRootfs>,
}

#[derive(Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "StopSignal")]
    stop_signal: Option<String>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn docker_configs_parse_with_nulls() -> Result<(), String> {
        let json = br#"{
            "architecture": "amd64", "os": "linux",
            "config": {
                "Entrypoint": null, "Cmd": ["sh"], "Env": ["PATH=/bin:/usr/bin", "EMPTY=", "BARE", "A=b=c"],
                "WorkingDir": "", "User": "1000:1000", "Labels": null, "StopSignal": "SIGQUIT"
            },
            "rootfs": {"type": "layers", "diff_ids": [
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ]},
            "history": [{"created_by": "x"}]
        }"#;
        let (config, diff_ids) = ImageConfig::parse(json)?;
        assert_eq!(config.entrypoint, Vec::<String>::new());
        assert_eq!(config.cmd, ["sh"]);
        assert_eq!(
            config.env,
            [
                ("PATH".to_owned(), "/bin:/usr/bin".to_owned()),
                ("EMPTY".to_owned(), String::new()),
                ("BARE".to_owned(), String::new()),
                ("A".to_owned(), "b=c".to_owned()),
            ]
        );
        assert_eq!(config.working_dir, None);
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(config.architecture, "amd64");
        assert_eq!(diff_ids.len(), 1);
        Ok(())
    }

    #[test]
    fn configs_without_a_config_section_are_empty() -> Result<(), String> {
        let (config, diff_ids) = ImageConfig::parse(b"{}")?;
        assert_eq!(config, ImageConfig::default());
        assert!(diff_ids.is_empty());
        assert!(ImageConfig::parse(b"[]").is_err());
        assert!(ImageConfig::parse(br#"{"rootfs": {"diff_ids": ["md5:00"]}}"#).is_err());
        Ok(())
    }

    #[test]
    fn container_command_and_args_override_as_kubernetes_does() {
        let image = ImageConfig {
            entrypoint: strings(&["/entry", "--flag"]),
            cmd: strings(&["default"]),
            ..Default::default()
        };
        assert_eq!(
            image.process_args(&[], &[]),
            ["/entry", "--flag", "default"]
        );
        assert_eq!(
            image.process_args(&[], &strings(&["mine"])),
            ["/entry", "--flag", "mine"]
        );
        assert_eq!(image.process_args(&strings(&["/cmd"]), &[]), ["/cmd"]);
        assert_eq!(
            image.process_args(&strings(&["/cmd"]), &strings(&["a"])),
            ["/cmd", "a"]
        );
        let cmd_only = ImageConfig {
            cmd: strings(&["/bin/sh", "-c", "x"]),
            ..Default::default()
        };
        assert_eq!(cmd_only.process_args(&[], &[]), ["/bin/sh", "-c", "x"]);
        // Args without an entrypoint replace Cmd entirely.
        assert_eq!(
            cmd_only.process_args(&[], &strings(&["/bin/true"])),
            ["/bin/true"]
        );
    }

    #[test]
    fn the_container_environment_and_working_dir_win() -> Result<(), RuntimeError> {
        let image = ImageConfig {
            cmd: strings(&["run"]),
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("MODE".into(), "image".into()),
            ],
            working_dir: Some("/srv".into()),
            user: Some("app".into()),
            ..Default::default()
        };
        let container = ContainerConfig {
            image: "app".into(),
            env: vec![("MODE".into(), "pod".into()), ("EXTRA".into(), "1".into())],
            ..Default::default()
        };
        let process = image.process(&container)?;
        assert_eq!(process.args, ["run"]);
        assert_eq!(
            process.env,
            [
                ("PATH".to_owned(), "/bin".to_owned()),
                ("MODE".to_owned(), "pod".to_owned()),
                ("EXTRA".to_owned(), "1".to_owned()),
            ]
        );
        assert_eq!(process.working_dir, PathBuf::from("/srv"));
        assert_eq!(process.user.as_deref(), Some("app"));

        let elsewhere = ContainerConfig {
            working_dir: Some("/tmp".into()),
            ..container
        };
        assert_eq!(
            image.process(&elsewhere)?.working_dir,
            PathBuf::from("/tmp")
        );
        let bare = ImageConfig::default();
        assert_eq!(
            bare.process(&ContainerConfig {
                command: strings(&["x"]),
                ..Default::default()
            })?
            .working_dir,
            PathBuf::from("/")
        );
        assert!(matches!(
            bare.process(&ContainerConfig::default()),
            Err(RuntimeError::InvalidArgument { .. })
        ));
        Ok(())
    }
}
