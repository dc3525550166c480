//! The API server's transport: its certificates, and serving a router over TLS.
//!
//! A Kubernetes API server is always reached over HTTPS. Like `kube-apiserver` started without
//! `--tls-cert-file`, Orchestra makes its own certificates on first start: [`ServingCerts`]
//! writes into a directory
//!
//! - `ca.crt`, `ca.key`: a self-signed certificate authority (ECDSA P-256, common name
//!   `orchestra-ca`, valid ten years);
//! - `server.crt`, `server.key`: the serving certificate, signed by that CA (ECDSA P-256, valid
//!   one year), for `127.0.0.1`, `::1`, `localhost`, `kubernetes`, `kubernetes.default`,
//!   `kubernetes.default.svc`, `kubernetes.default.svc.cluster.local` and the extra host names
//!   and addresses asked for;
//!
//! the private keys with mode `0600`. Later starts load them. The serving certificate is made
//! again, signed by the same CA, when it does not cover every name asked for, is not signed by
//! the CA, or expires within [`RENEW_BEFORE`]; the CA is never replaced, so kubeconfigs written
//! earlier keep working.
//!
//! Clients trust that CA only ([`ServingCerts::client_config`]); it goes into the kubeconfig as
//! `certificate-authority-data` (see [`crate::kubeconfig`]).
//!
//! [`serve_tls`] runs an [`axum::Router`] over TLS (HTTP/1.1 and HTTP/2, chosen by ALPN) until a
//! shutdown signal; [`serve_plain`] does the same over plain HTTP, for tests.
//!
//! # Examples
//!
//! ```no_run
//! use std::path::Path;
//!
//! use orchestra_api::tls::{ServingCerts, serve_tls};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let certs = ServingCerts::load_or_generate(Path::new("/var/lib/orchestra/pki"), &[])?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6443").await?;
//! let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
//! serve_tls(listener, certs.server_config()?, router, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Differences from Kubernetes
//!
//! - Keys are ECDSA P-256 (`kube-apiserver`'s self-signed certificates are RSA 2048).
//! - Client certificates are not asked for: clients authenticate with bearer tokens (see
//!   [`crate::authn`]).
//! - The CA is not renewed: after ten years, remove the directory to start over.

use std::fmt;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The file name of the CA certificate in the certificate directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The file name of the CA's private key in the certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The file name of the serving certificate in the certificate directory.
pub const SERVER_CERT_FILE: &str = "server.crt";
/// The file name of the serving certificate's private key in the certificate directory.
pub const SERVER_KEY_FILE: &str = "server.key";

/// The names every serving certificate is for: the loopback addresses and `localhost`, and the
/// names of the `kubernetes` service in the `default` namespace.
pub const DEFAULT_SANS: &[&str] = &[
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The common name of the generated CA.
pub const CA_COMMON_NAME: &str = "orchestra-ca";
/// The common name of the generated serving certificate.
pub const SERVER_COMMON_NAME: &str = "orchestra-apiserver";
/// How long the generated CA is valid: ten years (Kubernetes' `duration365d * 10`).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated serving certificate is valid: one year.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate that expires within this long is made again at start.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back the generated certificates' `notBefore` is set, for clocks running behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// How long a connection may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections get to finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Certificates could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file does not hold the PEM it should.
    #[error("{}: bad PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file holds a private key that cannot be used (not ECDSA P-256 PKCS#8, or corrupt).
    #[error("{}: unusable private key: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA given to [`ServingCerts::client_config`] holds no certificate, or a bad one.
    #[error("bad CA certificate: {0}")]
    CaBundle(String),
    /// A requested subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A serving certificate just signed does not verify against the CA certificate: the CA's
    /// key and certificate do not belong together.
    #[error("{} and {} do not belong together: {reason}", cert.display(), key.display())]
    CaMismatch {
        /// The CA certificate.
        cert: PathBuf,
        /// The CA key.
        key: PathBuf,
        /// The verification error.
        reason: String,
    },
    /// rustls refused the certificates or settings.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The API server's CA and serving certificate, kept in a directory: see the
/// [module documentation](self).
#[derive(Clone)]
pub struct ServingCerts {
    dir: PathBuf,
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    sans: Vec<String>,
    generated_ca: bool,
    generated_server: bool,
}

impl fmt::Debug for ServingCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCerts")
            .field("dir", &self.dir)
            .field("sans", &self.sans)
            .field("generated_ca", &self.generated_ca)
            .field("generated_server", &self.generated_server)
            .finish_non_exhaustive()
    }
}

impl ServingCerts {
    /// Loads the certificates in `dir`, making what is missing: the CA when `ca.crt` and
    /// `ca.key` are both absent, the serving certificate when absent or when it does not cover
    /// [`DEFAULT_SANS`] and `extra_sans` (host names or IP addresses), is not the CA's, or
    /// expires within [`RENEW_BEFORE`]. The directory is created (mode `0700`) if needed.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] / [`TlsError::Write`] naming the file; [`TlsError::Pem`] or
    /// [`TlsError::Key`] for a file that is there but unreadable as what it should be (including
    /// only one of `ca.crt` and `ca.key` being there); [`TlsError::InvalidSan`];
    /// [`TlsError::CaMismatch`] when the CA's key does not sign for its certificate.
    pub fn load_or_generate(dir: &Path, extra_sans: &[String]) -> Result<ServingCerts, TlsError> {
        let sans = requested_sans(extra_sans)?;
        create_private_dir(dir)?;
        let ca_cert_path = dir.join(CA_CERT_FILE);
        let ca_key_path = dir.join(CA_KEY_FILE);
        let server_cert_path = dir.join(SERVER_CERT_FILE);
        let server_key_path = dir.join(SERVER_KEY_FILE);

        // The CA: loaded, or made when neither file is there.
        let ca_cert_text = read_optional(&ca_cert_path)?;
        let ca_key_text = read_optional(&ca_key_path)?;
        let (ca_pem, ca_key, generated_ca) = match (ca_cert_text, ca_key_text) {
            (Some(cert), Some(key)) => {
                first_certificate(&cert, &ca_cert_path)?;
                let key_pair = parse_key(&key, &ca_key_path)?;
                (cert, key_pair, false)
            }
            (None, None) => {
                let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let mut params = ca_params();
                set_validity(&mut params, CA_VALIDITY);
                let cert = params.self_signed(&key_pair)?;
                let pem = cert.pem();
                // The key first: a certificate without its key is of no use.
                write_file(&ca_key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
                write_file(&ca_cert_path, pem.as_bytes(), 0o644)?;
                (pem, key_pair, true)
            }
            (Some(_), None) => {
                return Err(TlsError::Read {
                    path: ca_key_path,
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("missing, while {} is there", ca_cert_path.display()),
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Read {
                    path: ca_cert_path,
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("missing, while {} is there", ca_key_path.display()),
                    ),
                });
            }
        };
        let ca_der = first_certificate(&ca_pem, &ca_cert_path)?;
        let verifier = verifier_for(&ca_der).map_err(|reason| TlsError::Pem {
            path: ca_cert_path.clone(),
            reason,
        })?;

        // The serving certificate: kept when it is still good for every name.
        let server_cert_text = read_optional(&server_cert_path)?;
        let server_key_text = read_optional(&server_key_path)?;
        let existing = match (server_cert_text, server_key_text) {
            (Some(cert), Some(key)) => {
                let der = first_certificate(&cert, &server_cert_path)?;
                parse_key(&key, &server_key_path)?;
                let renew_at = unix_now().saturating_add(RENEW_BEFORE);
                covers(verifier.as_ref(), &der, &sans, renew_at).then_some((cert, key))
            }
            _ => None,
        };
        let (server_cert_pem, server_key_pem, generated_server) = match existing {
            Some((cert, key)) => (cert, key, false),
            None => {
                let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let mut params = CertificateParams::new(sans.clone())?;
                params.distinguished_name = rcgen::DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, SERVER_COMMON_NAME);
                params.is_ca = IsCa::NoCa;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.use_authority_key_identifier_extension = true;
                set_validity(&mut params, SERVER_VALIDITY);
                let issuer = Issuer::new(ca_params(), &ca_key);
                let cert = params.signed_by(&key_pair, &issuer)?;
                if !covers(verifier.as_ref(), cert.der(), &sans, unix_now()) {
                    return Err(TlsError::CaMismatch {
                        cert: ca_cert_path,
                        key: ca_key_path,
                        reason: "a certificate signed with the key does not verify against the \
                                 certificate"
                            .into(),
                    });
                }
                let key_pem = key_pair.serialize_pem();
                let cert_pem = cert.pem();
                write_file(&server_key_path, key_pem.as_bytes(), 0o600)?;
                write_file(&server_cert_path, cert_pem.as_bytes(), 0o644)?;
                (cert_pem, key_pem, true)
            }
        };

        Ok(ServingCerts {
            dir: dir.to_owned(),
            ca_pem,
            server_cert_pem,
            server_key_pem,
            sans,
            generated_ca,
            generated_server,
        })
    }

    /// The CA certificate, PEM: what clients trust (a kubeconfig's `certificate-authority-data`,
    /// a pod's `ca.crt`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The serving certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The directory the certificates are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names the serving certificate was asked to cover ([`DEFAULT_SANS`] and the extra
    /// ones, without duplicates).
    pub fn sans(&self) -> &[String] {
        &self.sans
    }

    /// Whether this start made the CA (it was not there).
    pub fn generated_ca(&self) -> bool {
        self.generated_ca
    }

    /// Whether this start made the serving certificate (it was absent, or no longer fit).
    pub fn generated_server(&self) -> bool {
        self.generated_server
    }

    /// The rustls server settings: the serving certificate and key, TLS 1.2 and 1.3, ALPN `h2`
    /// and `http/1.1`, no client certificates.
    ///
    /// # Errors
    ///
    /// [`TlsError::Pem`] / [`TlsError::Key`] (naming the file) if the PEM held cannot be read
    /// back, [`TlsError::Rustls`] if rustls refuses the pair (a key that is not the
    /// certificate's).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let cert_path = self.dir.join(SERVER_CERT_FILE);
        let key_path = self.dir.join(SERVER_KEY_FILE);
        let chain = vec![first_certificate(&self.server_cert_pem, &cert_path)?];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| {
            TlsError::Key {
                path: key_path,
                reason: e.to_string(),
            }
        })?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// rustls client settings that trust the certificates in `ca_pem` only (not the system's
    /// roots), with no client certificate. ALPN is left to the connector (hyper-rustls sets it).
    ///
    /// # Errors
    ///
    /// [`TlsError::CaBundle`] if `ca_pem` holds no certificate or a bad one.
    pub fn client_config(ca_pem: &str) -> Result<ClientConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError::CaBundle(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::CaBundle(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::CaBundle("no CERTIFICATE in the PEM".into()));
        }
        Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// The CA's parameters, minus its validity: also what the CA is rebuilt from to sign with a
/// loaded key (its name and key identifier method are all a signer needs, and they are fixed).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The ring provider, whatever the process default is.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Time since the Unix epoch, now.
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Sets `params` valid from [`BACKDATE`] ago for `validity` from now.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = unix_now();
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now.saturating_add(validity);
}

/// [`DEFAULT_SANS`] and `extra`, trimmed, checked and without duplicates (IP addresses in their
/// canonical form, DNS names in lower case).
fn requested_sans(extra: &[String]) -> Result<Vec<String>, TlsError> {
    let mut sans: Vec<String> = Vec::new();
    for san in DEFAULT_SANS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        let san = san.trim();
        let normal = match san.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                let name = san.to_ascii_lowercase();
                match ServerName::try_from(name.as_str()) {
                    Ok(ServerName::DnsName(_)) => name,
                    _ => return Err(TlsError::InvalidSan(san.to_owned())),
                }
            }
        };
        if !sans.contains(&normal) {
            sans.push(normal);
        }
    }
    Ok(sans)
}

/// A verifier of server certificates issued by the CA `ca`.
fn verifier_for(ca: &CertificateDer<'static>) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())
}

/// Whether `cert` is issued by the verifier's CA, valid at `when` and for every one of `sans`.
fn covers(
    verifier: &WebPkiServerVerifier,
    cert: &CertificateDer<'_>,
    sans: &[String],
    when: Duration,
) -> bool {
    let when = UnixTime::since_unix_epoch(when);
    sans.iter().all(|san| {
        ServerName::try_from(san.as_str()).is_ok_and(|name| {
            verifier
                .verify_server_cert(cert, &[], &name, &[], when)
                .is_ok()
        })
    })
}

/// The first certificate of a PEM text read from `path`.
fn first_certificate(pem: &str, path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no CERTIFICATE section".into(),
            other => other.to_string(),
        },
    })
}

/// A private key read from `path` (rcgen's, to sign with).
fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, TlsError> {
    if PrivateKeyDer::from_pem_slice(pem.as_bytes()).is_err() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no PRIVATE KEY section".into(),
        });
    }
    KeyPair::from_pem(pem).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The text of `path`, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| TlsError::Pem {
                path: path.to_owned(),
                reason: "not UTF-8 text".into(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates `dir` (and its parents) if missing, the directory itself with mode `0700`.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `contents` to `path` with `mode`, through a temporary file renamed into place, so that
/// a crash never leaves a half-written file (nor a key readable by others, even for a moment).
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    write_private(path, contents, mode).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// [`write_file`], with the bare I/O error.
pub(crate) fn write_private(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        // The mode given at creation is masked by the umask; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/// Serves `router` over TLS on `listener` until `shutdown` completes.
///
/// Each connection is handled in its own task: the TLS handshake (at most
/// [`HANDSHAKE_TIMEOUT`]; a failing one closes that connection only), then HTTP/1.1 or HTTP/2
/// (as negotiated by ALPN, see [`ServingCerts::server_config`]) through hyper-util's automatic
/// connection builder, with upgrades. When `shutdown` completes, the listener is closed,
/// connections are asked to finish (HTTP/2 `GOAWAY`, HTTP/1.1 closes after the response in
/// flight) and given [`SHUTDOWN_GRACE`], then the rest are dropped. Dropping the returned future
/// drops every connection at once.
///
/// # Errors
///
/// None at present: failures to accept (such as running out of file descriptors) are waited
/// out, failures of one connection end that connection.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    serve_with(
        listener,
        move |stream| {
            let acceptor = acceptor.clone();
            async move { acceptor.accept(stream).await }
        },
        router,
        shutdown,
    )
    .await
}

/// [`serve_tls`] over plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge): for tests, and for
/// a server behind a proxy that ends TLS.
///
/// # Errors
///
/// As [`serve_tls`]: none at present.
pub async fn serve_plain(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(
        listener,
        |stream| std::future::ready(Ok::<_, io::Error>(stream)),
        router,
        shutdown,
    )
    .await
}

/// The accept loop of [`serve_tls`] and [`serve_plain`]; `handshake` makes a connection's
/// transport out of the accepted stream.
async fn serve_with<H, F, S>(
    listener: TcpListener,
    handshake: H,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    H: Fn(TcpStream) -> F + Clone + Send + 'static,
    F: Future<Output = io::Result<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop, stopping) = watch::channel(false);
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        handshake(stream),
                        builder.clone(),
                        router.clone(),
                        stopping.clone(),
                    ));
                }
                Err(e) if is_connection_error(&e) => {}
                // Out of file descriptors, or the like: wait for some to be freed.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
    Ok(())
}

/// One connection: the handshake, then HTTP until done or until asked to stop.
async fn serve_connection<F, S>(
    handshake: F,
    builder: auto::Builder<TokioExecutor>,
    router: axum::Router,
    mut stopping: watch::Receiver<bool>,
) where
    F: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match done {
            Ok(Ok(io)) => io,
            Ok(Err(_)) | Err(_) => return,
        },
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    let service = TowerToHyperService::new(router);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Accept errors that concern one connection only.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::routing::get;
    use bytes::Bytes;
    use http::{Request, StatusCode, Version};
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client as HttpClient;
    use tokio::io::AsyncWriteExt as _;

    use super::*;
    use crate::authn::{
        ADMIN_USER, AUTHENTICATED_GROUP, Authentication, StaticTokens, UNAUTHORIZED_BODY, UserInfo,
        authenticate,
    };

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn verifier(certs: &ServingCerts) -> Arc<WebPkiServerVerifier> {
        let ca = first_certificate(certs.ca_pem(), Path::new("ca")).unwrap();
        verifier_for(&ca).unwrap()
    }

    fn server_der(certs: &ServingCerts) -> CertificateDer<'static> {
        first_certificate(certs.server_cert_pem(), Path::new("server")).unwrap()
    }

    #[test]
    fn first_start_writes_a_ca_and_a_serving_certificate_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let certs = ServingCerts::load_or_generate(&pki, &[]).unwrap();
        assert!(certs.generated_ca() && certs.generated_server());
        for file in [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
            assert!(pki.join(file).is_file(), "{file}");
        }
        assert_eq!(mode(&pki.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&pki.join(SERVER_KEY_FILE)), 0o600);
        assert_eq!(mode(&pki), 0o700);
        assert!(certs.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            std::fs::read_to_string(pki.join(CA_CERT_FILE)).unwrap(),
            certs.ca_pem()
        );
        assert_eq!(certs.sans(), DEFAULT_SANS);
        // Every default name is covered, for a year less the renewal margin.
        let in_eleven_months = unix_now() + SERVER_VALIDITY - RENEW_BEFORE;
        assert!(covers(
            &verifier(&certs),
            &server_der(&certs),
            certs.sans(),
            in_eleven_months
        ));
        // ... and no other.
        assert!(!covers(
            &verifier(&certs),
            &server_der(&certs),
            &["example.com".to_owned()],
            unix_now()
        ));
        // Debug does not show keys.
        assert!(!format!("{certs:?}").contains("PRIVATE"));
        certs.server_config().unwrap();
    }

    #[test]
    fn later_starts_load_and_new_names_renew_only_the_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServingCerts::load_or_generate(dir.path(), &[]).unwrap();
        let again = ServingCerts::load_or_generate(dir.path(), &[]).unwrap();
        assert!(!again.generated_ca() && !again.generated_server());
        assert_eq!(again.ca_pem(), first.ca_pem());
        assert_eq!(again.server_cert_pem(), first.server_cert_pem());

        // Names already covered (in another spelling) change nothing.
        let same = ServingCerts::load_or_generate(
            dir.path(),
            &["LOCALHOST".to_owned(), " 127.0.0.1 ".to_owned()],
        )
        .unwrap();
        assert!(!same.generated_server());

        let extra = ["10.96.0.1".to_owned(), "api.example.com".to_owned()];
        let renewed = ServingCerts::load_or_generate(dir.path(), &extra).unwrap();
        assert!(!renewed.generated_ca() && renewed.generated_server());
        assert_eq!(renewed.ca_pem(), first.ca_pem());
        assert_ne!(renewed.server_cert_pem(), first.server_cert_pem());
        let mut wanted: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
        wanted.extend(extra.iter().cloned());
        assert_eq!(renewed.sans(), wanted);
        // Signed by the CA that was loaded.
        assert!(covers(
            &verifier(&first),
            &server_der(&renewed),
            &wanted,
            unix_now()
        ));
        let reloaded = ServingCerts::load_or_generate(dir.path(), &extra).unwrap();
        assert!(!reloaded.generated_server());
        assert_eq!(reloaded.server_cert_pem(), renewed.server_cert_pem());
    }

    #[test]
    fn a_serving_certificate_of_another_ca_is_replaced() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let certs = ServingCerts::load_or_generate(ours.path(), &[]).unwrap();
        ServingCerts::load_or_generate(theirs.path(), &[]).unwrap();
        for file in [SERVER_CERT_FILE, SERVER_KEY_FILE] {
            std::fs::copy(theirs.path().join(file), ours.path().join(file)).unwrap();
        }
        let loaded = ServingCerts::load_or_generate(ours.path(), &[]).unwrap();
        assert!(loaded.generated_server());
        assert_eq!(loaded.ca_pem(), certs.ca_pem());
        assert!(covers(
            &verifier(&certs),
            &server_der(&loaded),
            loaded.sans(),
            unix_now()
        ));
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        ServingCerts::load_or_generate(dir.path(), &[]).unwrap();
        let ca = dir.path().join(CA_CERT_FILE);
        std::fs::write(&ca, "not PEM at all").unwrap();
        let err = ServingCerts::load_or_generate(dir.path(), &[]).unwrap_err();
        assert!(
            matches!(&err, TlsError::Pem { path, .. } if *path == ca),
            "{err}"
        );
        assert!(err.to_string().contains("ca.crt: bad PEM"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        ServingCerts::load_or_generate(dir.path(), &[]).unwrap();
        let key = dir.path().join(SERVER_KEY_FILE);
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = ServingCerts::load_or_generate(dir.path(), &[]).unwrap_err();
        assert!(
            matches!(&err, TlsError::Key { path, .. } if *path == key),
            "{err}"
        );

        // Only half of the CA.
        let dir = tempfile::tempdir().unwrap();
        ServingCerts::load_or_generate(dir.path(), &[]).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = ServingCerts::load_or_generate(dir.path(), &[]).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { path, .. } if path.ends_with(CA_KEY_FILE)),
            "{err}"
        );

        // A CA key that is not the CA certificate's.
        let other = tempfile::tempdir().unwrap();
        ServingCerts::load_or_generate(other.path(), &[]).unwrap();
        std::fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(SERVER_CERT_FILE)).unwrap();
        let err = ServingCerts::load_or_generate(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, TlsError::CaMismatch { .. }), "{err}");

        // An unreadable directory.
        let err = ServingCerts::load_or_generate(Path::new("/proc/orchestra-pki"), &[]);
        assert!(matches!(err, Err(TlsError::Write { .. })), "{err:?}");
    }

    #[test]
    fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["not a name", "", "a..b", "http://x"] {
            let err = ServingCerts::load_or_generate(dir.path(), &[bad.to_owned()]).unwrap_err();
            assert!(matches!(err, TlsError::InvalidSan(_)), "{bad}: {err}");
        }
        let sans = requested_sans(&["::0:1".to_owned(), "Node-1.Example.COM".to_owned()]).unwrap();
        assert_eq!(sans.len(), DEFAULT_SANS.len() + 1);
        assert_eq!(sans.last().unwrap(), "node-1.example.com");
    }

    #[test]
    fn client_configs_need_a_certificate() {
        assert!(matches!(
            ServingCerts::client_config(""),
            Err(TlsError::CaBundle(_))
        ));
        assert!(matches!(
            ServingCerts::client_config(
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
            ),
            Err(TlsError::CaBundle(_))
        ));
    }

    // -----------------------------------------------------------------------------------------
    // End to end
    // -----------------------------------------------------------------------------------------

    /// A router that answers who the caller is, behind the authentication middleware.
    fn router(authn: Authentication) -> axum::Router {
        axum::Router::new()
            .route(
                "/whoami",
                get(
                    |axum::Extension(user): axum::Extension<UserInfo>| async move {
                        format!("{} {}", user.name, user.groups.join(","))
                    },
                ),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(authn, authenticate))
    }

    type Https = HttpClient<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >;

    fn https_client(ca_pem: &str, http2: bool) -> Https {
        let tls = ServingCerts::client_config(ca_pem).unwrap();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = if http2 {
            builder.enable_all_versions().build()
        } else {
            builder.enable_http1().build()
        };
        HttpClient::builder(TokioExecutor::new()).build(connector)
    }

    async fn call(
        client: &Https,
        url: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, Version, BTreeMap<String, String>, String), String> {
        let mut request = Request::get(url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = client
            .request(request.body(Empty::new()).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let version = response.version();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((
            status,
            version,
            headers,
            String::from_utf8(body.to_vec()).unwrap(),
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_end_to_end_with_bearer_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let certs = ServingCerts::load_or_generate(&dir.path().join("pki"), &[]).unwrap();
        let (tokens, admin_token) =
            StaticTokens::generate_admin(&dir.path().join("tokens.csv")).unwrap();
        let authn = Authentication::new(Arc::new(tokens));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_tls(
            listener,
            certs.server_config().unwrap(),
            router(authn),
            async move {
                let _ = stopped.await;
            },
        ));

        // A client that sends garbage instead of a handshake does not stop the server.
        let mut garbage = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // Nor does one that connects and says nothing.
        let _silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

        // HTTP/2 by ALPN to the IP address, HTTP/1.1 to the DNS name `localhost`.
        for (host, http2) in [("127.0.0.1", true), ("localhost", false)] {
            let base = format!("https://{host}:{port}");
            let client = https_client(certs.ca_pem(), http2);
            let expected_version = if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };

            let (status, version, _, body) =
                call(&client, &format!("{base}/whoami"), Some(&admin_token))
                    .await
                    .unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(version, expected_version);
            assert_eq!(
                body,
                format!("{ADMIN_USER} system:masters,{AUTHENTICATED_GROUP}")
            );

            let (status, _, headers, body) = call(&client, &format!("{base}/whoami"), None)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body, UNAUTHORIZED_BODY);
            assert_eq!(headers["content-type"], "application/json");

            let (status, _, _, body) = call(&client, &format!("{base}/whoami"), Some("wrong"))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body, UNAUTHORIZED_BODY);

            // Health is public.
            let (status, _, _, body) = call(&client, &format!("{base}/healthz"), None)
                .await
                .unwrap();
            assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        }

        // A client trusting another CA refuses the server.
        let other = tempfile::tempdir().unwrap();
        let other = ServingCerts::load_or_generate(other.path(), &[]).unwrap();
        let stranger = https_client(other.ca_pem(), true);
        let err = call(
            &stranger,
            &format!("https://127.0.0.1:{port}/healthz"),
            None,
        )
        .await
        .unwrap_err();
        // (Both CAs are named `orchestra-ca`: the signature is what fails.)
        assert!(err.contains("InvalidCertificate"), "{err}");

        let client = https_client(certs.ca_pem(), false);

        // Graceful shutdown: a request in flight finishes, then the server returns.
        let slow = {
            let client = client.clone();
            let token = admin_token.clone();
            tokio::spawn(async move {
                call(
                    &client,
                    &format!("https://127.0.0.1:{port}/slow"),
                    Some(&token),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let (status, _, _, body) = slow.await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
        tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // The listener is closed.
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

        // A restart loads the same CA: the old client still trusts the server.
        let restarted = ServingCerts::load_or_generate(&dir.path().join("pki"), &[]).unwrap();
        assert_eq!(restarted.ca_pem(), certs.ca_pem());
        assert!(!restarted.generated_ca());
        let (tokens, again) = StaticTokens::generate_admin(&dir.path().join("tokens.csv")).unwrap();
        assert_eq!(again, admin_token);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_tls(
            listener,
            restarted.server_config().unwrap(),
            router(Authentication::new(Arc::new(tokens))),
            async move {
                let _ = stopped.await;
            },
        ));
        let (status, _, _, _) = call(
            &https_client(certs.ca_pem(), true),
            &format!("https://127.0.0.1:{port}/whoami"),
            Some(&admin_token),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn plain_http_serves_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = axum::Router::new().route("/healthz", get(|| async { "ok" }));
        let server = tokio::spawn(serve_plain(listener, router, async move {
            let _ = stopped.await;
        }));
        let client: HttpClient<_, Empty<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let response = client
            .get(format!("http://127.0.0.1:{port}/healthz").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // An idle keep-alive connection does not hold the shutdown up.
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
