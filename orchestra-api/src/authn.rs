//! Authentication: who a request comes from, as Kubernetes' bearer-token authenticators decide it.
//!
//! A request names its user with `Authorization: Bearer <token>`. An [`Authenticator`] turns a
//! token into a [`UserInfo`] (name, uid, groups, extra), says it does not know the token
//! (`Ok(None)`), or fails (`Err`). Three are here:
//!
//! - [`StaticTokens`]: a token file in the format of `kube-apiserver --token-auth-file`, a CSV of
//!   `token,user,uid,"group1,group2"`; [`StaticTokens::generate_admin`] makes one on first start,
//!   with a random token for the cluster administrator (`admin`, group `system:masters`);
//! - [`ServiceAccountTokens`]: the service-account tokens the control plane signs, checked
//!   against the API on every request so that tokens of deleted accounts, pods or secrets stop
//!   working at once;
//! - [`Chain`]: several authenticators, the first to know a token deciding (Kubernetes' union
//!   authenticator).
//!
//! [`authenticate`] is the axum middleware that runs them ([`Authentication`] holds the
//! authenticator and the anonymous settings):
//!
//! - a good token: the request goes on with its [`UserInfo`] in its extensions (with the group
//!   `system:authenticated` added), its `Authorization` header removed;
//! - a token no authenticator accepts: `401 Unauthorized` with Kubernetes' `Status` body
//!   ([`UNAUTHORIZED_BODY`]);
//! - no token (no `Authorization` header, or another scheme than `Bearer`): the request goes on
//!   as `system:anonymous` (group `system:unauthenticated`) when anonymous requests are allowed,
//!   or when it reads one of the public paths (`/healthz`, `/livez`, `/readyz`, `/version`: what
//!   Kubernetes' default RBAC lets anyone read through `system:public-info-viewer`); otherwise
//!   `401`.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::Router;
//! use axum::routing::get;
//! use orchestra_api::authn::{Authentication, StaticTokens, authenticate};
//!
//! let tokens = StaticTokens::parse("s3cr3t,alice,1001,\"dev,ops\"\n")?;
//! let authn = Authentication::new(Arc::new(tokens));
//! let router: Router = Router::new()
//!     .route("/api", get(|| async { "hello" }))
//!     .layer(axum::middleware::from_fn_with_state(authn, authenticate));
//! # let _ = router;
//! # Ok::<(), orchestra_api::authn::AuthnError>(())
//! ```
//!
//! # Differences from Kubernetes
//!
//! - Client certificates, OIDC, webhook and bootstrap tokens are not authenticators here.
//! - A token file's quoted fields may not span lines; empty groups in the group list are
//!   dropped (Kubernetes keeps a group named `""`).
//! - The public paths are allowed anonymously only for `GET` and `HEAD`, here at
//!   authentication; Kubernetes lets authorization (RBAC) decide.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method, StatusCode, header};
use orchestra_core::api::Client;
use orchestra_core::controllers::token::{TokenError, TokenVerifier};
use sha2::{Digest as _, Sha256};

/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The user name of anonymous requests.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group whose members may do anything (bound to `cluster-admin`).
pub const MASTERS_GROUP: &str = "system:masters";
/// The user [`StaticTokens::generate_admin`] makes a token for.
pub const ADMIN_USER: &str = "admin";
/// The paths anyone may read by default: those of Kubernetes' `system:public-info-viewer`.
pub const DEFAULT_ANONYMOUS_PATHS: &[&str] =
    &["/healthz", "/livez", "/readyz", "/version", "/version/"];
/// The body of a `401 Unauthorized` answer: a Kubernetes `Status`, byte for byte as
/// `kube-apiserver` writes it.
pub const UNAUTHORIZED_BODY: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

/// Who a request comes from (Kubernetes' `user.Info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (`admin`, `system:serviceaccount:<ns>:<name>`, `system:anonymous`).
    pub name: String,
    /// A unique id of the user, when the authenticator knows one.
    pub uid: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// Further attributes (the pod a service-account token is bound to, the credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user: `system:anonymous`, group `system:unauthenticated`.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS_USER.to_owned(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS_USER
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Authentication failed for another reason than the token being unknown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// A node name that cannot be a Node's.
    #[error("{0:?} is not a valid node name (a DNS subdomain)")]
    BadNodeName(String),
    /// A token file could not be read or written.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of a token file is not a token record.
    #[error("token file {}: line {line}: {message}", path.display())]
    BadLine {
        /// The file (`-` for text given directly).
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A token file has no token for [`ADMIN_USER`] in [`MASTERS_GROUP`].
    #[error("token file {}: no token for user {ADMIN_USER:?} in group {MASTERS_GROUP:?}", path.display())]
    NoAdminToken {
        /// The file.
        path: PathBuf,
    },
    /// No authenticator knows the bearer token (Kubernetes' "invalid bearer token").
    #[error("invalid bearer token")]
    InvalidToken,
    /// No randomness for a new token.
    #[error("cannot make a random token")]
    Random,
    /// A service-account token was refused.
    #[error("service account token: {0}")]
    ServiceAccount(#[from] TokenError),
    /// Several authenticators failed (from [`Chain`]).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    All(Vec<AuthnError>),
}

/// Turns a bearer token into a user (Kubernetes' `authenticator.Token`).
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The user `token` stands for; `Ok(None)` when this authenticator does not know the token
    /// (another may); `Err` when it knows it is bad (expired, revoked) or cannot tell.
    ///
    /// # Errors
    ///
    /// As above; the middleware answers `401` either way.
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError>;
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        (**self).authenticate(token).await
    }
}

// ---------------------------------------------------------------------------------------------
// Static tokens
// ---------------------------------------------------------------------------------------------

/// The users of a token file (`--token-auth-file`): see the [module documentation](self).
///
/// Tokens are kept as their SHA-256 digests and compared in constant time, all of them for every
/// request; `Debug` shows the users, never the tokens.
#[derive(Clone, Default)]
pub struct StaticTokens {
    entries: Vec<([u8; 32], UserInfo)>,
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field(
                "users",
                &self
                    .entries
                    .iter()
                    .map(|(_, u)| &u.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl StaticTokens {
    /// Reads a token file: one record a line, `token,user,uid[,"group1,group2,..."]`, fields
    /// separated by commas and optionally double-quoted (`""` for a quote inside quotes),
    /// leading spaces of fields ignored, blank lines skipped. A record with an empty token is
    /// skipped (as Kubernetes does, which warns); of two records with the same token the later
    /// wins.
    ///
    /// # Errors
    ///
    /// [`AuthnError::Io`] if the file cannot be read, [`AuthnError::BadLine`] with the line
    /// number for a record of fewer than three fields or with a bad quote.
    pub fn load(path: &Path) -> Result<StaticTokens, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthnError::Io {
            path: path.to_owned(),
            source,
        })?;
        StaticTokens::parse_named(&text, path)
    }

    /// [`StaticTokens::load`] of text given directly (errors name the file `-`).
    ///
    /// # Errors
    ///
    /// [`AuthnError::BadLine`], as [`StaticTokens::load`].
    pub fn parse(text: &str) -> Result<StaticTokens, AuthnError> {
        StaticTokens::parse_named(text, Path::new("-"))
    }

    fn parse_named(text: &str, path: &Path) -> Result<StaticTokens, AuthnError> {
        let mut tokens = StaticTokens::default();
        for (index, line) in text.lines().enumerate() {
            let bad = |message: String| AuthnError::BadLine {
                path: path.to_owned(),
                line: index + 1,
                message,
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line).map_err(bad)?;
            if fields.len() < 3 {
                return Err(bad(format!(
                    "a record has at least 3 columns (token, user name, user uid), found {}",
                    fields.len()
                )));
            }
            if fields[0].is_empty() {
                continue;
            }
            let groups = fields
                .get(3)
                .map(|groups| {
                    groups
                        .split(',')
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                &fields[0],
                UserInfo {
                    name: fields[1].clone(),
                    uid: fields[2].clone(),
                    groups,
                    extra: BTreeMap::new(),
                },
            );
        }
        Ok(tokens)
    }

    /// Adds (or replaces) the user of `token`.
    pub fn insert(&mut self, token: &str, user: UserInfo) {
        let digest = digest(token);
        self.entries.retain(|(d, _)| *d != digest);
        self.entries.push((digest, user));
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token file at `path` with the administrator's token: on first start (no file), a
    /// random token (32 bytes, unpadded base64url) for user [`ADMIN_USER`] (uid `admin`) in
    /// group [`MASTERS_GROUP`], written as a one-record token file with mode `0600`; on later
    /// starts, the file as it is, and its first such token. Returns the users and the
    /// administrator's token (for the kubeconfig).
    ///
    /// # Errors
    ///
    /// Those of [`StaticTokens::load`]; [`AuthnError::NoAdminToken`] when an existing file has
    /// no token of [`ADMIN_USER`] in [`MASTERS_GROUP`]; [`AuthnError::Io`] if the file cannot
    /// be written; [`AuthnError::Random`].
    pub fn generate_admin(path: &Path) -> Result<(StaticTokens, String), AuthnError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let tokens = StaticTokens::parse_named(&text, path)?;
                let admin = admin_token_in(&text).ok_or_else(|| AuthnError::NoAdminToken {
                    path: path.to_owned(),
                })?;
                Ok((tokens, admin))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = random_token()?;
                let text = format!("{token},{ADMIN_USER},{ADMIN_USER},\"{MASTERS_GROUP}\"\n");
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| AuthnError::Io {
                        path: parent.to_owned(),
                        source,
                    })?;
                }
                crate::tls::write_private(path, text.as_bytes(), 0o600).map_err(|source| {
                    AuthnError::Io {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                let tokens = StaticTokens::parse_named(&text, path)?;
                Ok((tokens, token))
            }
            Err(source) => Err(AuthnError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// A random token: 32 bytes from the operating system, unpadded base64url.
fn random_token() -> Result<String, AuthnError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| AuthnError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The user name of the agent of node `node`: `system:node:<node>`.
pub fn node_user(node: &str) -> String {
    format!("{}{node}", crate::authz::NODE_USER_PREFIX)
}

/// The group of node agents.
pub const NODES_GROUP: &str = "system:nodes";

/// The token of node `node`'s agent in the token file at `path` (user `system:node:<node>`,
/// group `system:nodes`): the one already there, or a new random one appended to the file
/// (created with mode `0600` if missing). A server reading the file with [`TokenFile`] accepts
/// the new token without a restart.
///
/// # Errors
///
/// [`AuthnError::Io`] if the file cannot be read or written; [`AuthnError::BadNodeName`] for a
/// name that is not a DNS subdomain; [`AuthnError::Random`].
pub fn node_token(path: &Path, node: &str) -> Result<String, AuthnError> {
    let valid = !node.is_empty()
        && node.len() <= 253
        && node.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(AuthnError::BadNodeName(node.to_owned()));
    }
    let user = node_user(node);
    ensure_token(path, &user, &user, &[NODES_GROUP])
}

/// The token of `user` in the token file at `path`: the one already there, or a new random one
/// appended to the file (created with mode `0600` if missing) with this uid and these groups.
///
/// # Errors
///
/// [`AuthnError::Io`] if the file cannot be read or written; [`AuthnError::Random`].
pub fn ensure_token(
    path: &Path,
    user: &str,
    uid: &str,
    groups: &[&str],
) -> Result<String, AuthnError> {
    let io = |source| AuthnError::Io {
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let existing = text
        .lines()
        .filter_map(|line| split_csv_line(line.strip_suffix('\r').unwrap_or(line)).ok())
        .find(|fields| fields.len() >= 3 && !fields[0].is_empty() && fields[1] == user)
        .map(|fields| fields[0].clone());
    if let Some(token) = existing {
        return Ok(token);
    }
    let token = random_token()?;
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let quote = |field: &str| format!("\"{}\"", field.replace('"', "\"\""));
    text.push_str(&format!(
        "{token},{},{},{}\n",
        quote(user),
        quote(uid),
        quote(&groups.join(","))
    ));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    crate::tls::write_private(path, text.as_bytes(), 0o600).map_err(io)?;
    Ok(token)
}

/// A token file read again whenever it changes (its length or modification time), so that
/// tokens added (by [`node_token`]) or removed take effect without a restart. A file that
/// cannot be read or parsed keeps the last good set (the error goes to standard error).
pub struct TokenFile {
    path: std::path::PathBuf,
    state: std::sync::Mutex<(Option<FileStamp>, Arc<StaticTokens>)>,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenFile {
    /// The token file at `path`, read now.
    ///
    /// # Errors
    ///
    /// Those of [`StaticTokens::load`].
    pub fn open(path: &Path) -> Result<TokenFile, AuthnError> {
        let stamp = file_stamp(path);
        let tokens = StaticTokens::load(path)?;
        Ok(TokenFile {
            path: path.to_owned(),
            state: std::sync::Mutex::new((stamp, Arc::new(tokens))),
        })
    }

    /// The tokens as the file holds them now.
    fn current(&self) -> Arc<StaticTokens> {
        let stamp = file_stamp(&self.path);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stamp != state.0 {
            match StaticTokens::load(&self.path) {
                Ok(tokens) => *state = (stamp, Arc::new(tokens)),
                Err(error) => {
                    eprintln!("keeping the previous tokens: {error}");
                    state.0 = stamp;
                }
            }
        }
        state.1.clone()
    }
}

/// A file's modification time and length.
type FileStamp = (std::time::SystemTime, u64);

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

#[async_trait]
impl Authenticator for TokenFile {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        self.current().authenticate(token).await
    }
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        let presented = digest(token);
        // Every entry is compared, whether or not one matched before.
        let mut found = None;
        for (stored, user) in &self.entries {
            if constant_time_eq(stored, &presented) {
                found = Some(user);
            }
        }
        Ok(found.cloned())
    }
}

/// The first token of [`ADMIN_USER`] in [`MASTERS_GROUP`] in token-file text already parsed.
fn admin_token_in(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| split_csv_line(line.strip_suffix('\r').unwrap_or(line)).ok())
        .find(|fields| {
            fields.len() >= 4
                && !fields[0].is_empty()
                && fields[1] == ADMIN_USER
                && fields[3].split(',').any(|g| g == MASTERS_GROUP)
        })
        .map(|fields| fields[0].clone())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The fields of one CSV line (RFC 4180 quoting, leading spaces trimmed as Go's
/// `csv.Reader{TrimLeadingSpace: true}`).
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed on its line".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a bare \" in an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Service-account tokens
// ---------------------------------------------------------------------------------------------

/// The service-account tokens the control plane signs, checked with
/// [`TokenVerifier::verify_live`] against the API on every request: a token works while its
/// account (and the pod or secret it is bound to) exists.
///
/// A token that is not a JWT, or is another issuer's, is not this authenticator's (`Ok(None)`);
/// one that is ours but bad (expired, wrong audience, bad signature, revoked) is an error.
#[derive(Clone, Debug)]
pub struct ServiceAccountTokens {
    verifier: TokenVerifier,
    client: Client,
    audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// Tokens checked by `verifier` for its implicit audiences, live against `client`.
    pub fn new(verifier: TokenVerifier, client: Client) -> ServiceAccountTokens {
        ServiceAccountTokens {
            verifier,
            client,
            audiences: Vec::new(),
        }
    }

    /// Checks tokens for these audiences instead of the verifier's implicit ones.
    #[must_use]
    pub fn with_audiences(mut self, audiences: Vec<String>) -> ServiceAccountTokens {
        self.audiences = audiences;
        self
    }
}

#[async_trait]
impl Authenticator for ServiceAccountTokens {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        match self
            .verifier
            .verify_live(&self.client, token, &self.audiences)
            .await
        {
            Ok(identity) => Ok(Some(UserInfo {
                name: identity.username(),
                uid: identity.uid.clone(),
                groups: identity.groups(),
                extra: identity.extra(),
            })),
            Err(
                TokenError::Malformed(_)
                | TokenError::WrongIssuer { .. }
                | TokenError::UnsupportedAlgorithm(_),
            ) => Ok(None),
            Err(e) => Err(AuthnError::ServiceAccount(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chain
// ---------------------------------------------------------------------------------------------

/// Several authenticators, asked in order (Kubernetes' union authenticator): the first that
/// accepts the token decides; when none does, the errors of those that failed, or `Ok(None)`
/// when none failed.
#[derive(Clone, Default)]
pub struct Chain {
    authenticators: Vec<Arc<dyn Authenticator>>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("authenticators", &self.authenticators.len())
            .finish()
    }
}

impl Chain {
    /// A chain of no authenticator (that knows no token).
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Adds `authenticator` at the end of the chain.
    #[must_use]
    pub fn with(mut self, authenticator: impl Authenticator + 'static) -> Chain {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Adds a shared authenticator at the end of the chain.
    #[must_use]
    pub fn with_shared(mut self, authenticator: Arc<dyn Authenticator>) -> Chain {
        self.authenticators.push(authenticator);
        self
    }
}

#[async_trait]
impl Authenticator for Chain {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        let mut errors = Vec::new();
        for authenticator in &self.authenticators {
            match authenticator.authenticate(token).await {
                Ok(Some(user)) => return Ok(Some(user)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(None),
            1 => Err(errors.remove(0)),
            _ => Err(AuthnError::All(errors)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------------

/// What [`authenticate`] runs: the authenticator, whether anonymous requests are allowed, and
/// the paths anyone may read.
#[derive(Clone)]
pub struct Authentication {
    authenticator: Arc<dyn Authenticator>,
    allow_anonymous: bool,
    anonymous_paths: Arc<[String]>,
}

impl fmt::Debug for Authentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authentication")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("anonymous_paths", &self.anonymous_paths)
            .finish_non_exhaustive()
    }
}

impl Authentication {
    /// Requests authenticated by `authenticator`; anonymous ones refused except to read
    /// [`DEFAULT_ANONYMOUS_PATHS`].
    pub fn new(authenticator: Arc<dyn Authenticator>) -> Authentication {
        Authentication {
            authenticator,
            allow_anonymous: false,
            anonymous_paths: DEFAULT_ANONYMOUS_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        }
    }

    /// Whether requests without a token go on as `system:anonymous` (Kubernetes'
    /// `--anonymous-auth`; here off by default).
    #[must_use]
    pub fn allow_anonymous(mut self, allow: bool) -> Authentication {
        self.allow_anonymous = allow;
        self
    }

    /// The paths requests without a token may read (`GET`, `HEAD`) even when anonymous
    /// requests are not allowed. A path ending in `*` stands for every path it starts (as in
    /// RBAC's `nonResourceURLs`).
    #[must_use]
    pub fn anonymous_paths(mut self, paths: impl IntoIterator<Item = String>) -> Authentication {
        self.anonymous_paths = paths.into_iter().collect();
        self
    }

    /// Who `request`'s headers say it comes from: `Ok(Some(user))` for a good bearer token,
    /// `Ok(None)` for no bearer token, `Err` for a bad one.
    ///
    /// # Errors
    ///
    /// The authenticator's error; [`AuthnError::InvalidToken`] for a token it does not know.
    pub async fn user_of(&self, headers: &http::HeaderMap) -> Result<Option<UserInfo>, AuthnError> {
        let Some(token) = bearer_token(headers) else {
            return Ok(None);
        };
        match self.authenticator.authenticate(token).await? {
            Some(mut user) => {
                if !user.is_anonymous() && !user.in_group(AUTHENTICATED_GROUP) {
                    user.groups.push(AUTHENTICATED_GROUP.to_owned());
                }
                Ok(Some(user))
            }
            None => Err(AuthnError::InvalidToken),
        }
    }

    /// Whether a request without a token may go on, anonymously.
    fn anonymous_allowed(&self, method: &Method, path: &str) -> bool {
        if self.allow_anonymous {
            return true;
        }
        if method != Method::GET && method != Method::HEAD {
            return false;
        }
        self.anonymous_paths
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == allowed,
            })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), as
/// Kubernetes reads it: `None` without the header, for another scheme, or an empty token.
fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The axum middleware: see the [module documentation](self). Use it with
/// [`axum::middleware::from_fn_with_state`].
pub async fn authenticate(
    State(authn): State<Authentication>,
    mut request: Request,
    next: Next,
) -> Response {
    let user = match authn.user_of(request.headers()).await {
        Ok(Some(user)) => {
            // As Kubernetes does: nothing behind the authenticator gets to see the token.
            request.headers_mut().remove(header::AUTHORIZATION);
            user
        }
        Ok(None) if authn.anonymous_allowed(request.method(), request.uri().path()) => {
            UserInfo::anonymous()
        }
        Ok(None) | Err(_) => return unauthorized(),
    };
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// `401 Unauthorized` with Kubernetes' `Status` body.
pub fn unauthorized() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::Extension;
    use axum::routing::{get, post};
    use http_body_util::BodyExt as _;
    use orchestra_core::api::{Api, DeleteParams, PostParams};
    use orchestra_core::controllers::token::{CREDENTIAL_ID_EXTRA, SigningKey, TokenIssuer};
    use orchestra_core::k8s::api::core::v1::ServiceAccount;
    use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use orchestra_core::store::MemoryStore;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn token_files_read_as_kubernetes_reads_them() {
        let text = "\
alpha,alice,1001,\"dev,ops\"\r
  beta , bob,1002\n\
\n\
\"ga\"\"mma\",\"carol, c.\",1003,\"\"\n\
,nobody,0\n\
alpha,alice2,1004,admins\n";
        let tokens = StaticTokens::parse(text).unwrap();
        assert_eq!(tokens.len(), 3);
        // The later record of a token wins.
        let alice = tokens.authenticate("alpha").await.unwrap().unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.uid.as_str()),
            ("alice2", "1004")
        );
        assert_eq!(alice.groups, ["admins"]);
        // Leading spaces go, trailing ones stay (Go's TrimLeadingSpace).
        assert_eq!(tokens.authenticate("beta").await.unwrap(), None);
        let bob = tokens.authenticate("beta ").await.unwrap().unwrap();
        assert_eq!((bob.name.as_str(), bob.uid.as_str()), ("bob", "1002"));
        assert!(bob.groups.is_empty());
        let carol = tokens.authenticate("ga\"mma").await.unwrap().unwrap();
        assert_eq!(carol.name, "carol, c.");
        assert!(carol.groups.is_empty());
        assert_eq!(tokens.authenticate("").await.unwrap(), None);
        assert_eq!(tokens.authenticate("unknown").await.unwrap(), None);
        // Debug shows users, not tokens.
        let debug = format!("{tokens:?}");
        assert!(
            debug.contains("alice2") && !debug.contains("alpha"),
            "{debug}"
        );

        let groups = StaticTokens::parse("t,u,1,\"a,b,c\"\n").unwrap();
        let u = groups.authenticate("t").await.unwrap().unwrap();
        assert_eq!(u.groups, ["a", "b", "c"]);
    }

    #[test]
    fn bad_token_file_lines_are_reported_by_number() {
        for (text, line, needle) in [
            ("a,b,c\nonly,two\n", 2, "at least 3 columns"),
            ("\n\n\"open,b,c\n", 3, "not closed"),
            ("a,b,c\nx,\"y\"z,c\n", 2, "after a quoted field"),
            ("a,b\"c,d\n", 1, "bare"),
        ] {
            match StaticTokens::parse(text) {
                Err(AuthnError::BadLine {
                    line: found,
                    message,
                    path,
                }) => {
                    assert_eq!(found, line, "{text:?}");
                    assert!(message.contains(needle), "{message}");
                    assert_eq!(path, Path::new("-"));
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.csv");
        std::fs::write(&file, "ok,u,1\nbad\n").unwrap();
        let err = StaticTokens::load(&file).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "tokens.csv: line 2: a record has at least 3 columns \
                 (token, user name, user uid), found 1"
            ),
            "{err}"
        );
        let err = StaticTokens::load(&dir.path().join("missing.csv")).unwrap_err();
        assert!(matches!(err, AuthnError::Io { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_admin_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth").join("tokens.csv");
        let (tokens, token) = StaticTokens::generate_admin(&path).unwrap();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{token},admin,admin,\"system:masters\"\n")
        );
        let admin = tokens.authenticate(&token).await.unwrap().unwrap();
        assert_eq!(admin, user("admin", &[MASTERS_GROUP]).with_uid("admin"));

        let (again, same) = StaticTokens::generate_admin(&path).unwrap();
        assert_eq!(same, token);
        assert!(again.authenticate(&token).await.unwrap().is_some());

        // Another start elsewhere makes another token.
        let (_, other) = StaticTokens::generate_admin(&dir.path().join("other.csv")).unwrap();
        assert_ne!(other, token);

        // A file without an administrator.
        let users = dir.path().join("users.csv");
        std::fs::write(&users, "t,admin,1,\"dev\"\nu,bob,2,\"system:masters\"\n").unwrap();
        assert!(matches!(
            StaticTokens::generate_admin(&users),
            Err(AuthnError::NoAdminToken { .. })
        ));
    }

    impl UserInfo {
        fn with_uid(mut self, uid: &str) -> UserInfo {
            self.uid = uid.to_owned();
            self
        }
    }

    #[test]
    fn digests_compare_in_full() {
        let a = digest("a");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }

    /// An authenticator that fails.
    struct Failing;

    #[async_trait]
    impl Authenticator for Failing {
        async fn authenticate(&self, _token: &str) -> Result<Option<UserInfo>, AuthnError> {
            Err(AuthnError::Random)
        }
    }

    #[tokio::test]
    async fn a_chain_takes_the_first_that_knows_the_token() {
        let mut first = StaticTokens::default();
        first.insert("a", user("alice", &[]));
        let mut second = StaticTokens::default();
        second.insert("a", user("not-alice", &[]));
        second.insert("b", user("bob", &[]));
        let chain = Chain::new().with(first).with(Failing).with(second);
        assert_eq!(
            chain.authenticate("a").await.unwrap().unwrap().name,
            "alice"
        );
        // An error before does not stop a later authenticator from accepting.
        assert_eq!(chain.authenticate("b").await.unwrap().unwrap().name, "bob");
        // Nobody knows it, and one failed: the failure.
        assert!(matches!(
            chain.authenticate("c").await,
            Err(AuthnError::Random)
        ));
        let two = Chain::new().with(Failing).with_shared(Arc::new(Failing));
        assert!(matches!(
            two.authenticate("c").await,
            Err(AuthnError::All(errors)) if errors.len() == 2
        ));
        assert_eq!(Chain::new().authenticate("c").await.unwrap(), None);
    }

    #[tokio::test]
    async fn service_account_tokens_work_while_their_account_exists() {
        let client = orchestra_core::api::Client::builder(MemoryStore::new()).build();
        client.bootstrap().await.unwrap();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let account = accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some("builder".into()),
                        ..ObjectMeta::default()
                    },
                    ..ServiceAccount::default()
                },
            )
            .await
            .unwrap();
        let issuer = TokenIssuer::new(SigningKey::generate().unwrap());
        let token = issuer
            .issue(&account, &[], Duration::from_secs(3600), None)
            .unwrap();
        let authenticator = ServiceAccountTokens::new(issuer.verifier(), client.clone());

        let found = authenticator.authenticate(&token).await.unwrap().unwrap();
        assert_eq!(found.name, "system:serviceaccount:default:builder");
        assert_eq!(found.uid, account.metadata.uid.clone().unwrap());
        assert_eq!(
            found.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                AUTHENTICATED_GROUP
            ]
        );
        assert!(found.extra.contains_key(CREDENTIAL_ID_EXTRA));

        // Not a JWT, or another issuer's: not this authenticator's.
        assert_eq!(authenticator.authenticate("s3cr3t").await.unwrap(), None);
        let stranger = TokenIssuer::new(SigningKey::generate().unwrap())
            .with_issuer("https://elsewhere.example");
        let foreign = stranger
            .issue(&account, &[], Duration::from_secs(3600), None)
            .unwrap();
        assert_eq!(authenticator.authenticate(&foreign).await.unwrap(), None);
        // Ours, but for another audience: refused.
        let other_audience = issuer
            .issue(
                &account,
                &["vault".to_owned()],
                Duration::from_secs(3600),
                None,
            )
            .unwrap();
        assert!(matches!(
            authenticator.authenticate(&other_audience).await,
            Err(AuthnError::ServiceAccount(
                TokenError::AudienceMismatch { .. }
            ))
        ));
        let for_vault = authenticator
            .clone()
            .with_audiences(vec!["vault".to_owned()]);
        assert!(
            for_vault
                .authenticate(&other_audience)
                .await
                .unwrap()
                .is_some()
        );

        // The account goes: so does the token.
        accounts
            .delete("builder", &DeleteParams::default())
            .await
            .unwrap();
        assert!(matches!(
            authenticator.authenticate(&token).await,
            Err(AuthnError::ServiceAccount(TokenError::NotFound { .. }))
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Middleware
    // -----------------------------------------------------------------------------------------

    fn app(authn: Authentication) -> Router {
        let whoami = |Extension(user): Extension<UserInfo>, headers: http::HeaderMap| async move {
            format!(
                "{} [{}] auth-header={}",
                user.name,
                user.groups.join(","),
                headers.contains_key(header::AUTHORIZATION)
            )
        };
        Router::new()
            .route("/api/v1/pods", get(whoami))
            .route("/healthz", get(whoami).post(whoami))
            .route("/version", get(whoami))
            .route("/metrics/x", get(whoami))
            .route("/debug", post(whoami))
            .layer(axum::middleware::from_fn_with_state(authn, authenticate))
    }

    fn authn() -> Authentication {
        let mut tokens = StaticTokens::default();
        tokens.insert("good", user("alice", &["dev"]));
        Authentication::new(Arc::new(tokens))
    }

    async fn send(
        router: &Router,
        method: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let mut request = http::Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_middleware_admits_good_tokens_and_answers_401_otherwise() {
        let router = app(authn());
        let (status, _, body) = send(&router, "GET", "/api/v1/pods", Some("Bearer good")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "alice [dev,system:authenticated] auth-header=false");
        // The scheme is case-insensitive; surrounding spaces do not matter.
        let (status, _, _) = send(&router, "GET", "/api/v1/pods", Some("  bearer good ")).await;
        assert_eq!(status, StatusCode::OK);

        let unauthorized = (
            StatusCode::UNAUTHORIZED,
            Some("application/json".to_owned()),
            UNAUTHORIZED_BODY.to_owned(),
        );
        for header in [
            None,
            Some("Bearer wrong"),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic YWRtaW46YWRtaW4="),
            Some("good"),
        ] {
            assert_eq!(
                send(&router, "GET", "/api/v1/pods", header).await,
                unauthorized,
                "{header:?}"
            );
        }
        let status: Value = serde_json::from_str(UNAUTHORIZED_BODY).unwrap();
        assert_eq!(
            status,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized",
                "code": 401})
        );
    }

    #[tokio::test]
    async fn public_paths_are_readable_anonymously() {
        let router = app(authn());
        for path in ["/healthz", "/version"] {
            let (status, _, body) = send(&router, "GET", path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(
                body,
                "system:anonymous [system:unauthenticated] auth-header=false"
            );
        }
        // Reading only.
        let (status, _, _) = send(&router, "POST", "/healthz", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A bad token is refused even there; another scheme counts as none.
        let (status, _, _) = send(&router, "GET", "/healthz", Some("Bearer wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = send(&router, "GET", "/healthz", Some("Basic eDp5")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("system:anonymous"));
        // A good one is used there too.
        let (_, _, body) = send(&router, "GET", "/healthz", Some("Bearer good")).await;
        assert!(body.starts_with("alice "));
        // Exact paths.
        let (status, _, _) = send(&router, "GET", "/metrics/x", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A configured list, with a prefix.
        let router = app(authn().anonymous_paths(["/metrics/*".to_owned()]));
        let (status, _, _) = send(&router, "GET", "/metrics/x", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(&router, "GET", "/healthz", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn anonymous_requests_go_on_when_allowed() {
        let router = app(authn().allow_anonymous(true));
        let (status, _, body) = send(&router, "POST", "/debug", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "system:anonymous [system:unauthenticated] auth-header=false"
        );
        let (status, _, _) = send(&router, "GET", "/api/v1/pods", Some("Bearer wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn authenticated_is_added_once() {
        let mut tokens = StaticTokens::default();
        tokens.insert("t", user("sa", &[AUTHENTICATED_GROUP, "x"]));
        let router = app(Authentication::new(Arc::new(tokens)));
        let (_, _, body) = send(&router, "GET", "/api/v1/pods", Some("Bearer t")).await;
        assert_eq!(body, "sa [system:authenticated,x] auth-header=false");
    }
}
