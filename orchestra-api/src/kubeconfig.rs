//! Kubeconfig files: writing one for the cluster's administrator, reading the one a node agent
//! is given.
//!
//! A kubeconfig (`~/.kube/config`) tells `kubectl` and every other client where the API server
//! is, which CA to trust for it, and which credentials to present. [`Kubeconfig`] is one
//! cluster, one user with a bearer token and one context joining them, made current:
//!
//! ```yaml
//! apiVersion: v1
//! clusters:
//! - cluster:
//!     certificate-authority-data: LS0tLS1CRUdJTi…
//!     server: "https://127.0.0.1:6443"
//!   name: orchestra
//! contexts:
//! - context:
//!     cluster: orchestra
//!     user: admin
//!   name: "admin@orchestra"
//! current-context: "admin@orchestra"
//! kind: Config
//! preferences: {}
//! users:
//! - name: admin
//!   user:
//!     token: …
//! ```
//!
//! [`Kubeconfig::write`] writes it with mode `0600` (it holds a credential). [`read`] reads the
//! current context of any kubeconfig into a [`ClusterAccess`]: its server, its CA
//! (`certificate-authority-data`, or a `certificate-authority` file) and its token (`token`, or
//! a `tokenFile`), relative file names being relative to the kubeconfig's directory, as
//! `client-go` reads them.
//!
//! # Examples
//!
//! ```
//! use orchestra_api::kubeconfig::{Kubeconfig, parse};
//!
//! let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
//! let config = Kubeconfig::new("https://127.0.0.1:6443", pem, "admin", "s3cr3t");
//! let text = config.to_yaml();
//! assert!(text.contains("current-context: \"admin@orchestra\"\n"));
//! let access = parse(&text)?;
//! assert_eq!(access.server, "https://127.0.0.1:6443");
//! assert_eq!(access.ca_pem.as_deref(), Some(pem));
//! assert_eq!(access.token.as_deref(), Some("s3cr3t"));
//! # Ok::<(), orchestra_api::kubeconfig::KubeconfigError>(())
//! ```
//!
//! # Differences from client-go
//!
//! - Reading takes one file (no `KUBECONFIG` list merging); of the credentials, only bearer
//!   tokens are read: client certificates, exec plugins and auth providers are not.
//! - `insecure-skip-tls-verify`, proxies and namespaces are not read.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use orchestra_core::manifest::{SyntaxError, encode_yaml, parse_all};
use serde_json::{Value, json};

/// The cluster name [`Kubeconfig::new`] gives.
pub const DEFAULT_CLUSTER: &str = "orchestra";

/// A kubeconfig could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeconfigError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML (or JSON).
    #[error("not a kubeconfig: {0}")]
    Syntax(#[from] SyntaxError),
    /// The text is YAML, but not a kubeconfig with what is needed.
    #[error("invalid kubeconfig: {0}")]
    Invalid(String),
}

/// One cluster, one user with a token, and the context joining them: see the
/// [module documentation](self). `Debug` does not show the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The API server's URL (`https://host:port`).
    pub server: String,
    /// The CA that signs the API server's certificate, PEM.
    pub ca_pem: String,
    /// The user's name in the kubeconfig (not necessarily its name in the cluster: that is the
    /// token's).
    pub user: String,
    /// The user's bearer token.
    pub token: String,
    /// The cluster's name in the kubeconfig.
    pub cluster: String,
    /// The context's name, and the current context.
    pub context: String,
}

impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("cluster", &self.cluster)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig for `user` with `token` at `server`, trusting `ca_pem`; the cluster named
    /// [`DEFAULT_CLUSTER`], the context `<user>@<cluster>`.
    pub fn new(
        server: impl Into<String>,
        ca_pem: impl Into<String>,
        user: impl Into<String>,
        token: impl Into<String>,
    ) -> Kubeconfig {
        let user = user.into();
        Kubeconfig {
            server: server.into(),
            ca_pem: ca_pem.into(),
            context: format!("{user}@{DEFAULT_CLUSTER}"),
            user,
            token: token.into(),
            cluster: DEFAULT_CLUSTER.to_owned(),
        }
    }

    /// Names the cluster `cluster`.
    #[must_use]
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Kubeconfig {
        self.cluster = cluster.into();
        self
    }

    /// Names the context `context`.
    #[must_use]
    pub fn with_context(mut self, context: impl Into<String>) -> Kubeconfig {
        self.context = context.into();
        self
    }

    /// The kubeconfig as JSON.
    pub fn to_value(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{
                "name": self.cluster,
                "cluster": {
                    "server": self.server,
                    "certificate-authority-data": STANDARD.encode(self.ca_pem.as_bytes()),
                },
            }],
            "users": [{
                "name": self.user,
                "user": {"token": self.token},
            }],
            "contexts": [{
                "name": self.context,
                "context": {"cluster": self.cluster, "user": self.user},
            }],
            "current-context": self.context,
        })
    }

    /// The kubeconfig as YAML.
    pub fn to_yaml(&self) -> String {
        encode_yaml(&self.to_value())
    }

    /// Writes the kubeconfig to `path` with mode `0600` (replacing the file at once, never
    /// leaving half of it), creating its directory if needed.
    ///
    /// # Errors
    ///
    /// [`KubeconfigError::Io`] naming the file or directory.
    pub fn write(&self, path: &Path) -> Result<(), KubeconfigError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| KubeconfigError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        crate::tls::write_private(path, self.to_yaml().as_bytes(), 0o600).map_err(|source| {
            KubeconfigError::Io {
                path: path.to_owned(),
                source,
            }
        })
    }
}

/// What a kubeconfig's current context says about reaching the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    /// The API server's URL.
    pub server: String,
    /// The CA to trust for it, PEM (`None`: the kubeconfig names none, the system's roots
    /// would be trusted).
    pub ca_pem: Option<String>,
    /// The bearer token (`None`: the user has another kind of credential, or none).
    pub token: Option<String>,
    /// The current context's name.
    pub context: String,
    /// Its cluster's name.
    pub cluster: String,
    /// Its user's name.
    pub user: String,
}

impl fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("server", &self.server)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<PEM>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("context", &self.context)
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .finish()
    }
}

/// Reads the current context of the kubeconfig at `path`; files it names
/// (`certificate-authority`, `tokenFile`) are relative to its directory.
///
/// # Errors
///
/// [`KubeconfigError::Io`] naming the file (the kubeconfig or one it names),
/// [`KubeconfigError::Syntax`], [`KubeconfigError::Invalid`] saying what is missing.
pub fn read(path: &Path) -> Result<ClusterAccess, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_in(&text, base)
}

/// Reads the current context of a kubeconfig given as text; files it names are relative to
/// the working directory.
///
/// # Errors
///
/// As [`read`].
pub fn parse(text: &str) -> Result<ClusterAccess, KubeconfigError> {
    parse_in(text, Path::new("."))
}

fn parse_in(text: &str, base: &Path) -> Result<ClusterAccess, KubeconfigError> {
    let documents = parse_all(text)?;
    let [document] = documents.as_slice() else {
        return Err(invalid(format!(
            "one YAML document expected, found {}",
            documents.len()
        )));
    };
    let config = &document.value;
    if let Some(kind) = config.get("kind").and_then(Value::as_str)
        && kind != "Config"
    {
        return Err(invalid(format!("kind is {kind:?}, not \"Config\"")));
    }
    let context_name = string_at(config, "current-context")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("no current-context".into()))?;
    let context = named(config, "contexts", context_name, "context")?;
    let cluster_name = string_at(context, "cluster")
        .ok_or_else(|| invalid(format!("context {context_name:?} names no cluster")))?;
    let user_name = string_at(context, "user")
        .ok_or_else(|| invalid(format!("context {context_name:?} names no user")))?;
    let cluster = named(config, "clusters", cluster_name, "cluster")?;
    let user = named(config, "users", user_name, "user")?;

    let server = string_at(cluster, "server")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("cluster {cluster_name:?} has no server")))?;
    let ca_pem = if let Some(data) = string_at(cluster, "certificate-authority-data") {
        let bytes = STANDARD.decode(data.trim()).map_err(|e| {
            invalid(format!(
                "cluster {cluster_name:?}: certificate-authority-data is not base64: {e}"
            ))
        })?;
        let pem = String::from_utf8(bytes).map_err(|_| {
            invalid(format!(
                "cluster {cluster_name:?}: certificate-authority-data is not PEM"
            ))
        })?;
        Some(pem)
    } else if let Some(file) = string_at(cluster, "certificate-authority").filter(|f| !f.is_empty())
    {
        Some(read_named_file(base, file)?)
    } else {
        None
    };
    let token = if let Some(token) = string_at(user, "token").filter(|t| !t.is_empty()) {
        Some(token.to_owned())
    } else if let Some(file) = string_at(user, "tokenFile").filter(|f| !f.is_empty()) {
        Some(read_named_file(base, file)?.trim().to_owned())
    } else {
        None
    };

    Ok(ClusterAccess {
        server: server.to_owned(),
        ca_pem,
        token,
        context: context_name.to_owned(),
        cluster: cluster_name.to_owned(),
        user: user_name.to_owned(),
    })
}

fn invalid(message: String) -> KubeconfigError {
    KubeconfigError::Invalid(message)
}

fn string_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The `field` of the entry named `name` in the list `list` (`contexts`, `clusters`, `users`).
fn named<'a>(
    config: &'a Value,
    list: &str,
    name: &str,
    field: &str,
) -> Result<&'a Value, KubeconfigError> {
    config
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|entry| string_at(entry, "name") == Some(name))
        .and_then(|entry| entry.get(field))
        .filter(|value| value.is_object())
        .ok_or_else(|| invalid(format!("no {field} named {name:?} in {list}")))
}

fn read_named_file(base: &Path, file: &str) -> Result<String, KubeconfigError> {
    let path = base.join(file);
    std::fs::read_to_string(&path).map_err(|source| KubeconfigError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n";

    #[test]
    fn writes_the_kubeconfig_kubectl_reads() {
        let config = Kubeconfig::new("https://127.0.0.1:6443", PEM, "admin", "tok")
            .with_cluster("prod")
            .with_context("admin@prod");
        let ca = STANDARD.encode(PEM);
        assert_eq!(
            config.to_yaml(),
            format!(
                r#"apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: "https://127.0.0.1:6443"
  name: prod
contexts:
- context:
    cluster: prod
    user: admin
  name: "admin@prod"
current-context: "admin@prod"
kind: Config
preferences: {{}}
users:
- name: admin
  user:
    token: tok
"#
            )
        );
        assert!(!format!("{config:?}").contains("tok\""));
    }

    #[test]
    fn written_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube").join("config");
        let config = Kubeconfig::new("https://10.0.0.1:6443", PEM, "admin", "s3cr3t");
        config.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let access = read(&path).unwrap();
        assert_eq!(
            access,
            ClusterAccess {
                server: "https://10.0.0.1:6443".into(),
                ca_pem: Some(PEM.into()),
                token: Some("s3cr3t".into()),
                context: "admin@orchestra".into(),
                cluster: "orchestra".into(),
                user: "admin".into(),
            }
        );
        let debug = format!("{access:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("BEGIN"),
            "{debug}"
        );
        // Written again: replaced.
        Kubeconfig::new("https://10.0.0.2:6443", PEM, "admin", "other")
            .write(&path)
            .unwrap();
        assert_eq!(read(&path).unwrap().token.as_deref(), Some("other"));
    }

    #[test]
    fn reads_the_current_context_with_files_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), PEM).unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let text = "\
apiVersion: v1
kind: Config
current-context: agent
clusters:
- name: other
  cluster: {server: 'https://wrong:1'}
- name: main
  cluster:
    server: https://api.example:6443
    certificate-authority: ca.crt
users:
- name: node
  user:
    tokenFile: token
- name: certs
  user:
    client-certificate-data: Zm9v
contexts:
- name: agent
  context: {cluster: main, user: node, namespace: kube-system}
- name: by-cert
  context: {cluster: other, user: certs}
";
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        let access = read(&path).unwrap();
        assert_eq!(access.server, "https://api.example:6443");
        assert_eq!(access.ca_pem.as_deref(), Some(PEM));
        assert_eq!(access.token.as_deref(), Some("from-file"));
        assert_eq!(
            (access.cluster.as_str(), access.user.as_str()),
            ("main", "node")
        );

        // Another current context: no CA, no token.
        let by_cert = text.replace("current-context: agent", "current-context: by-cert");
        let access = parse(&by_cert).unwrap();
        assert_eq!(access.server, "https://wrong:1");
        assert_eq!((access.ca_pem, access.token), (None, None));

        // A named file that is not there names itself.
        let missing = text.replace("ca.crt", "gone.crt");
        std::fs::write(&path, missing).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(&err, KubeconfigError::Io { path, .. } if path.ends_with("gone.crt")),
            "{err}"
        );
    }

    #[test]
    fn what_is_missing_is_said() {
        for (text, needle) in [
            ("apiVersion: v1\nkind: Config\n", "no current-context"),
            ("kind: Pod\ncurrent-context: a\n", "kind is \"Pod\""),
            (
                "current-context: a\ncontexts: []\n",
                "no context named \"a\"",
            ),
            (
                "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n",
                "no cluster named \"c\"",
            ),
            (
                "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n\
                 clusters:\n- name: c\n  cluster: {server: 'https://x'}\n",
                "no user named \"u\"",
            ),
            (
                "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n\
                 clusters:\n- name: c\n  cluster: {insecure-skip-tls-verify: true}\n\
                 users:\n- name: u\n  user: {token: t}\n",
                "has no server",
            ),
            (
                "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n\
                 clusters:\n- name: c\n  cluster: {server: 'https://x', \
                 certificate-authority-data: '%%%'}\n\
                 users:\n- name: u\n  user: {token: t}\n",
                "not base64",
            ),
            ("a: b\n---\nc: d\n", "one YAML document"),
        ] {
            match parse(text) {
                Err(KubeconfigError::Invalid(message)) => {
                    assert!(message.contains(needle), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(parse("a: [b\n"), Err(KubeconfigError::Syntax(_))));
        assert!(matches!(
            read(Path::new("/nonexistent/kubeconfig")),
            Err(KubeconfigError::Io { .. })
        ));
    }
}
