//! Service-account tokens: the control plane's signing key, bound tokens and their verification,
//! and the token controller (Kubernetes' `pkg/serviceaccount` and
//! `pkg/controller/serviceaccount/tokens_controller.go`).
//!
//! A pod talks to the API as its service account, with a token the API server can check without
//! storing it: a JSON Web Token signed by the control plane's [`SigningKey`].
//!
//! # Signing key
//!
//! Tokens are signed with **ES256** (ECDSA over P-256 with SHA-256, RFC 7518 §3.4), through the
//! pure-Rust `p256` crate. Kubernetes signs with RS256 by default and accepts ES256 keys as
//! well (an EC key in `--service-account-key-file`); ES256 keys are small and fast to make, and,
//! unlike EdDSA, every consumer of Kubernetes' OIDC discovery document (cloud identity
//! federation, other clusters) accepts ES256. A [`SigningKey`] is generated from the operating
//! system's randomness, or loaded from bytes: PKCS#8 (DER or PEM, `BEGIN PRIVATE KEY`), SEC1 (DER
//! or PEM, `BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey` writes) or the raw 32-byte
//! big-endian private scalar; it is saved as PKCS#8 ([`SigningKey::to_pkcs8_der`],
//! [`SigningKey::to_pkcs8_pem`]) or as the raw scalar ([`SigningKey::to_seed`]). Its key id
//! (`kid`) is Kubernetes' own: the unpadded base64url SHA-256 of the public key's DER
//! (SubjectPublicKeyInfo). [`VerifyingKey::jwk`] is the public key as the JWK that Kubernetes
//! serves at `/openid/v1/jwks`.
//!
//! # Bound tokens
//!
//! [`TokenIssuer::issue`] writes a token as Kubernetes' TokenRequest API does, with the claims
//! Kubernetes writes:
//!
//! ```text
//! {"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1767229200,"iat":1767225600,
//!  "iss":"https://kubernetes.default.svc.cluster.local","jti":"…",
//!  "kubernetes.io":{"namespace":"default","node":{"name":"node-1"},
//!                   "pod":{"name":"web-0","uid":"…"},
//!                   "serviceaccount":{"name":"default","uid":"…"}},
//!  "nbf":1767225600,"sub":"system:serviceaccount:default:default"}
//! ```
//!
//! bound to the account and, optionally, to a pod (or a secret, or a node: [`BoundObject`]), so
//! that the token stops working when what it is bound to goes. They are the way pods should get
//! tokens: they expire, name their audience, and die with their pod.
//!
//! # Verification
//!
//! [`TokenVerifier::verify`] is what the API server's authenticator does with a bearer token:
//! the signature (any of its keys), the issuer, the times (`nbf`, `iat`, `exp`, with Kubernetes'
//! leeway of [`LEEWAY`]) and the audience, each failure its own [`TokenError`]; it returns the
//! [`ServiceAccountIdentity`] (user `system:serviceaccount:<ns>:<name>`, groups
//! `system:serviceaccounts`, `system:serviceaccounts:<ns>`, `system:authenticated`, and the pod,
//! node and credential id as extra). [`TokenVerifier::verify_live`] also checks against the API,
//! as Kubernetes' validators do, that the account still exists with the token's uid, and so do
//! the bound pod, secret or node, none deleted.
//!
//! # Token secrets
//!
//! Before Kubernetes 1.24, every service account got a Secret of type
//! `kubernetes.io/service-account-token` holding a token that never expires. Kubernetes no longer
//! creates them, but still fills in the ones users create. [`TokenController`] does both: it keeps
//! one token secret for every account (named `<account>-token-<5 characters>`, owned by the
//! account through an `ownerReference`, created again if deleted), fills in every token secret
//! that names an account (`token`, `namespace`, `ca.crt` when a CA is configured, and the
//! `kubernetes.io/service-account.uid` annotation), and deletes the token secrets whose account is
//! gone. Their tokens are Kubernetes' legacy tokens: issuer `kubernetes/serviceaccount`, the
//! `kubernetes.io/serviceaccount/*` claims, no expiry; they are valid while their secret holds
//! them and their account exists. Prefer bound tokens: these are for clients that read a secret.
//!
//! # Differences from Kubernetes
//!
//! - The signing algorithm is ES256 only (Kubernetes also does RS256).
//! - A pod-bound token names the pod's node by name only: Kubernetes also looks up the node's
//!   uid (pass the node in [`BoundObject::Pod`] to get it).
//! - A bound token without `exp` is refused (Kubernetes' TokenRequest never issues one).
//! - The token controller does not list token secrets in the account's `secrets` field
//!   (Kubernetes stopped doing so in 1.24; the secrets are found by their annotation).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::controllers::token::{SigningKey, TokenIssuer};
//! use orchestra_core::k8s::api::core::v1::ServiceAccount;
//!
//! let issuer = TokenIssuer::new(SigningKey::generate()?);
//! let mut account = ServiceAccount::default();
//! account.metadata.name = Some("builder".into());
//! account.metadata.namespace = Some("ci".into());
//! account.metadata.uid = Some("4a6f9b3e-0000-4000-8000-000000000001".into());
//! let audiences = ["https://kubernetes.default.svc.cluster.local".to_owned()];
//! let token = issuer.issue(&account, &audiences, Duration::from_secs(3600), None)?;
//!
//! let identity = issuer.verifier().verify(&token, &[])?;
//! assert_eq!(identity.username(), "system:serviceaccount:ci:builder");
//! assert!(identity.groups().contains(&"system:serviceaccounts:ci".to_owned()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Preconditions};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::elliptic_curve::Generate as _;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
    LineEnding,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::endpoints::feed_deletions;
use crate::api::{Api, Client, DeleteParams, ListParams, PostParams};
use crate::clock::{Clock, SystemClock};
use crate::runtime::controller::Controller;
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::WatcherConfig;
use crate::runtime::{Action, WorkQueue};
use crate::status::{StatusError, StatusReason};

/// The issuer (`iss`) of bound tokens unless configured otherwise: the API server's in-cluster
/// address, as Kubernetes' `--service-account-issuer` is usually set.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The issuer of legacy (secret-based) tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// How far token times may be off (Kubernetes' `jwt.DefaultLeeway`): a token is accepted up to
/// this long before `nbf` and `iat` and after `exp`, and a bound object deleted less than this
/// long ago still counts.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// The JWS algorithm of the tokens.
pub const ALGORITHM: &str = "ES256";

/// The type of secrets holding a service-account token.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// The annotation of a token secret naming its account.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str =
    crate::validation::SERVICE_ACCOUNT_NAME_ANNOTATION;

/// The annotation of a token secret giving its account's uid.
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// The key of a token secret's token.
pub const TOKEN_KEY: &str = "token";

/// The key of a token secret's namespace.
pub const NAMESPACE_KEY: &str = "namespace";

/// The key of a token secret's CA bundle.
pub const ROOT_CA_KEY: &str = "ca.crt";

/// The group of every service account.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The extra key giving the name of the pod a token is bound to.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// The extra key giving the uid of the pod a token is bound to.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// The extra key giving the name of the node of a token.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The extra key giving the uid of the node of a token.
pub const NODE_UID_EXTRA: &str = "authentication.kubernetes.io/node-uid";

/// The extra key giving the token's credential id (`JTI=<jti>`).
pub const CREDENTIAL_ID_EXTRA: &str = "authentication.kubernetes.io/credential-id";

/// The user name of a service account: `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A signing key could not be made, read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// The bytes are not a P-256 key in any format this reads.
    #[error("not a P-256 key: {0}")]
    Invalid(String),
    /// The key could not be encoded.
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// The key id Kubernetes gives a public key: the unpadded base64url SHA-256 of its DER
/// SubjectPublicKeyInfo.
fn key_id_of(key: &p256::ecdsa::VerifyingKey) -> Result<String, KeyError> {
    let der = key
        .to_public_key_der()
        .map_err(|error| KeyError::Encode(error.to_string()))?;
    Ok(b64(Sha256::digest(der.as_bytes())))
}

/// The control plane's private key for signing tokens (ES256): see the
/// [module documentation](self). Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_inner(inner: p256::ecdsa::SigningKey) -> Result<SigningKey, KeyError> {
        let public = VerifyingKey::from_inner(*inner.verifying_key())?;
        Ok(SigningKey { inner, public })
    }

    /// A new key from the operating system's randomness.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] when the operating system gives no randomness.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let inner = p256::ecdsa::SigningKey::try_generate()
            .map_err(|error| KeyError::Random(error.to_string()))?;
        SigningKey::from_inner(inner)
    }

    /// The key whose private scalar is these 32 big-endian bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `seed` is not 32 bytes or not a valid scalar (zero, or not
    /// below the group order).
    pub fn from_seed(seed: &[u8]) -> Result<SigningKey, KeyError> {
        let inner = p256::ecdsa::SigningKey::from_slice(seed)
            .map_err(|_| KeyError::Invalid("not a 32-byte P-256 private scalar".into()))?;
        SigningKey::from_inner(inner)
    }

    /// The key in a PKCS#8 DER document.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `der` is not a PKCS#8 P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|error| KeyError::Invalid(error.to_string()))?;
        SigningKey::from_inner(p256::ecdsa::SigningKey::from(&secret))
    }

    /// The key in a SEC1 (`ECPrivateKey`) DER document.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `der` is not a SEC1 P-256 key.
    pub fn from_sec1_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let secret = p256::SecretKey::from_sec1_der(der)
            .map_err(|error| KeyError::Invalid(error.to_string()))?;
        SigningKey::from_inner(p256::ecdsa::SigningKey::from(&secret))
    }

    /// The key in a PEM document: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `pem` is neither, or not a P-256 key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        // `openssl ecparam -genkey` writes an `EC PARAMETERS` block before the key: read the
        // first private key block, as Kubernetes' keyutil does.
        let block = ["PRIVATE KEY", "EC PRIVATE KEY"]
            .iter()
            .filter_map(|label| {
                let start = pem.find(&format!("-----BEGIN {label}-----"))?;
                let end = format!("-----END {label}-----");
                let stop = start + pem[start..].find(&end)? + end.len();
                Some((start, &pem[start..stop]))
            })
            .min_by_key(|(start, _)| *start)
            .map_or(pem, |(_, block)| block);
        let secret = p256::SecretKey::from_pem(block.trim())
            .map_err(|error| KeyError::Invalid(error.to_string()))?;
        SigningKey::from_inner(p256::ecdsa::SigningKey::from(&secret))
    }

    /// The key in `bytes`, whichever of the formats this reads they hold: PEM (PKCS#8 or SEC1),
    /// 32 raw bytes (the scalar), DER (PKCS#8 or SEC1).
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when the bytes are none of these.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::controllers::token::SigningKey;
    ///
    /// let key = SigningKey::generate()?;
    /// let saved = key.to_pkcs8_pem()?;
    /// let loaded = SigningKey::from_bytes(saved.as_bytes())?;
    /// assert_eq!(loaded.key_id(), key.key_id());
    /// assert_eq!(SigningKey::from_bytes(&key.to_seed()[..])?.key_id(), key.key_id());
    /// # Ok::<(), orchestra_core::controllers::token::KeyError>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        if let Ok(text) = std::str::from_utf8(bytes)
            && text.trim_start().starts_with("-----BEGIN")
        {
            return SigningKey::from_pem(text);
        }
        if bytes.len() == 32 {
            return SigningKey::from_seed(bytes);
        }
        SigningKey::from_pkcs8_der(bytes).or_else(|pkcs8| {
            SigningKey::from_sec1_der(bytes).map_err(|sec1| {
                KeyError::Invalid(format!("neither PKCS#8 ({pkcs8}) nor SEC1 ({sec1})"))
            })
        })
    }

    /// The key as a PKCS#8 DER document.
    ///
    /// # Errors
    ///
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let document = self
            .inner
            .to_pkcs8_der()
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// The key as a PKCS#8 PEM document (`BEGIN PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))
    }

    /// The private scalar, 32 big-endian bytes ([`SigningKey::from_seed`] reads it back).
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(self.inner.to_bytes().as_slice());
        seed
    }

    /// The key id (`kid`) of the tokens it signs.
    pub fn key_id(&self) -> &str {
        &self.public.key_id
    }

    /// The public half, for verifiers.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// An ES256 signature (r ‖ s, 64 bytes) of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssueError> {
        let signature: p256::ecdsa::Signature = self
            .inner
            .try_sign(message)
            .map_err(|error| IssueError::Sign(error.to_string()))?;
        Ok(signature.to_bytes().to_vec())
    }
}

/// A public key that verifies tokens, with its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: p256::ecdsa::VerifyingKey,
    key_id: String,
}

impl VerifyingKey {
    fn from_inner(inner: p256::ecdsa::VerifyingKey) -> Result<VerifyingKey, KeyError> {
        let key_id = key_id_of(&inner)?;
        Ok(VerifyingKey { inner, key_id })
    }

    /// The key in a DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `der` is not a P-256 public key.
    pub fn from_public_key_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        let inner = p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map_err(|error| KeyError::Invalid(error.to_string()))?;
        VerifyingKey::from_inner(inner)
    }

    /// The key in a PEM SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] when `pem` is not a P-256 public key.
    pub fn from_public_key_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        let inner = p256::ecdsa::VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|error| KeyError::Invalid(error.to_string()))?;
        VerifyingKey::from_inner(inner)
    }

    /// The key as a DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    ///
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        self.inner
            .to_public_key_der()
            .map(|document| document.as_bytes().to_vec())
            .map_err(|error| KeyError::Encode(error.to_string()))
    }

    /// The key as a PEM SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`KeyError::Encode`] if encoding fails.
    pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))
    }

    /// The key id (`kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key as a JSON Web Key, as Kubernetes serves it at `/openid/v1/jwks`:
    /// `{"use":"sig","kty":"EC","kid":…,"crv":"P-256","alg":"ES256","x":…,"y":…}`.
    pub fn jwk(&self) -> Value {
        let point = self.inner.to_sec1_point(false);
        let bytes = point.as_bytes();
        // Uncompressed: 0x04 ‖ x ‖ y.
        let (x, y) = if bytes.len() == 65 {
            (&bytes[1..33], &bytes[33..65])
        } else {
            (&bytes[..0], &bytes[..0])
        };
        json!({
            "alg": ALGORITHM,
            "crv": "P-256",
            "kid": self.key_id,
            "kty": "EC",
            "use": "sig",
            "x": b64(x),
            "y": b64(y),
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|signature| self.inner.verify(message, &signature).is_ok())
    }
}

// ---------------------------------------------------------------------------------------------
// Issuing
// ---------------------------------------------------------------------------------------------

/// A token could not be issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The account (or the bound object) lacks a field the token needs.
    #[error("the {kind} has no {field}")]
    MissingField {
        /// The kind of the object.
        kind: BoundKind,
        /// The missing field (`metadata.name`, `metadata.namespace`, `metadata.uid`).
        field: &'static str,
    },
    /// The bound object is in another namespace than the account.
    #[error("the {kind} is in namespace {found:?}, not the service account's {expected:?}")]
    NamespaceMismatch {
        /// The kind of the bound object.
        kind: BoundKind,
        /// The account's namespace.
        expected: String,
        /// The bound object's namespace.
        found: String,
    },
    /// The expiry is less than a second, or too far to write.
    #[error("invalid expiry: {0:?}")]
    InvalidExpiry(Duration),
    /// Encoding or signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// What a bound token is bound to, besides its account: when it goes (or is replaced by an
/// object of the same name), the token stops working.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum BoundObject<'a> {
    /// A pod of the account's namespace, and optionally its node (for the node's uid; without
    /// it the token names the pod's `spec.nodeName` only).
    Pod {
        /// The pod.
        pod: &'a Pod,
        /// The pod's node.
        node: Option<&'a Node>,
    },
    /// A secret of the account's namespace.
    Secret(&'a Secret),
    /// A node.
    Node(&'a Node),
}

/// The kinds a token refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BoundKind {
    /// The service account.
    ServiceAccount,
    /// A bound pod.
    Pod,
    /// A bound secret (or a legacy token's secret).
    Secret,
    /// A bound node.
    Node,
}

impl fmt::Display for BoundKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BoundKind::ServiceAccount => "ServiceAccount",
            BoundKind::Pod => "Pod",
            BoundKind::Secret => "Secret",
            BoundKind::Node => "Node",
        })
    }
}

fn required(meta: &ObjectMeta, kind: BoundKind) -> Result<(&str, &str), IssueError> {
    let name = meta
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(IssueError::MissingField {
            kind,
            field: "metadata.name",
        })?;
    let uid = meta
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or(IssueError::MissingField {
            kind,
            field: "metadata.uid",
        })?;
    Ok((name, uid))
}

fn same_namespace(meta: &ObjectMeta, kind: BoundKind, namespace: &str) -> Result<(), IssueError> {
    let found = meta.namespace.as_deref().unwrap_or_default();
    if found == namespace {
        Ok(())
    } else {
        Err(IssueError::NamespaceMismatch {
            kind,
            expected: namespace.to_owned(),
            found: found.to_owned(),
        })
    }
}

fn reference(name: &str, uid: &str) -> Value {
    let mut fields = Map::new();
    fields.insert("name".into(), Value::from(name));
    if !uid.is_empty() {
        fields.insert("uid".into(), Value::from(uid));
    }
    Value::Object(fields)
}

/// Writes tokens for service accounts: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct TokenIssuer {
    key: Arc<SigningKey>,
    issuer: String,
    clock: Arc<dyn Clock>,
}

impl TokenIssuer {
    /// An issuer signing with `key`, as [`DEFAULT_ISSUER`], on the system clock.
    pub fn new(key: SigningKey) -> TokenIssuer {
        TokenIssuer {
            key: Arc::new(key),
            issuer: DEFAULT_ISSUER.to_owned(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer name (`iss`) of the tokens (Kubernetes' `--service-account-issuer`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> TokenIssuer {
        self.issuer = issuer.into();
        self
    }

    /// The clock for `iat`, `nbf` and `exp` (a [`Client`]'s clock, in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TokenIssuer {
        self.clock = clock;
        self
    }

    /// The issuer name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A verifier of this issuer's tokens: its key, its issuer (and legacy tokens), its clock,
    /// the issuer as the implicit audience.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(&self.issuer, [self.key.verifying_key().clone()])
            .with_clock(Arc::clone(&self.clock))
    }

    /// A token for `account`, for `audiences`, valid for `expiry` from now, bound to `pod` if
    /// given (and then naming the pod's node).
    ///
    /// # Errors
    ///
    /// [`IssueError`]: the account or pod lacks a name, namespace or uid, the pod is in another
    /// namespace, the expiry is under a second.
    pub fn issue(
        &self,
        account: &ServiceAccount,
        audiences: &[String],
        expiry: Duration,
        pod: Option<&Pod>,
    ) -> Result<String, IssueError> {
        self.issue_bound(
            account,
            audiences,
            expiry,
            pod.map(|pod| BoundObject::Pod { pod, node: None }),
        )
    }

    /// [`TokenIssuer::issue`], bound to any [`BoundObject`].
    ///
    /// # Errors
    ///
    /// As [`TokenIssuer::issue`].
    pub fn issue_bound(
        &self,
        account: &ServiceAccount,
        audiences: &[String],
        expiry: Duration,
        bound: Option<BoundObject<'_>>,
    ) -> Result<String, IssueError> {
        let (name, uid) = required(&account.metadata, BoundKind::ServiceAccount)?;
        let namespace = account
            .metadata
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or(IssueError::MissingField {
                kind: BoundKind::ServiceAccount,
                field: "metadata.namespace",
            })?;
        let seconds = i64::try_from(expiry.as_secs())
            .ok()
            .filter(|s| *s >= 1)
            .ok_or(IssueError::InvalidExpiry(expiry))?;
        let now = self.clock.now().as_second();
        let expires = now
            .checked_add(seconds)
            .filter(|e| Timestamp::from_second(*e).is_ok())
            .ok_or(IssueError::InvalidExpiry(expiry))?;

        let mut private = Map::new();
        private.insert("namespace".into(), Value::from(namespace));
        match bound {
            None => {}
            Some(BoundObject::Pod { pod, node }) => {
                let (pod_name, pod_uid) = required(&pod.metadata, BoundKind::Pod)?;
                same_namespace(&pod.metadata, BoundKind::Pod, namespace)?;
                let node_name = pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.node_name.as_deref())
                    .filter(|n| !n.is_empty());
                if let Some(node_name) = node_name {
                    let node_uid = node
                        .filter(|node| node.metadata.name.as_deref() == Some(node_name))
                        .and_then(|node| node.metadata.uid.as_deref())
                        .unwrap_or_default();
                    private.insert("node".into(), reference(node_name, node_uid));
                }
                private.insert("pod".into(), reference(pod_name, pod_uid));
            }
            Some(BoundObject::Secret(secret)) => {
                let (secret_name, secret_uid) = required(&secret.metadata, BoundKind::Secret)?;
                same_namespace(&secret.metadata, BoundKind::Secret, namespace)?;
                private.insert("secret".into(), reference(secret_name, secret_uid));
            }
            Some(BoundObject::Node(node)) => {
                let (node_name, node_uid) = required(&node.metadata, BoundKind::Node)?;
                private.insert("node".into(), reference(node_name, node_uid));
            }
        }
        private.insert("serviceaccount".into(), reference(name, uid));

        // Keys in sorted order, as Go's encoding/json writes Kubernetes' claims.
        let mut claims = Map::new();
        if !audiences.is_empty() {
            claims.insert("aud".into(), json!(audiences));
        }
        claims.insert("exp".into(), Value::from(expires));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("iss".into(), Value::from(self.issuer.as_str()));
        claims.insert(
            "jti".into(),
            Value::from(uuid::Uuid::new_v4().hyphenated().to_string()),
        );
        claims.insert("kubernetes.io".into(), Value::Object(private));
        claims.insert("nbf".into(), Value::from(now));
        claims.insert(
            "sub".into(),
            Value::from(service_account_username(namespace, name)),
        );
        self.sign(&Value::Object(claims))
    }

    /// A legacy token for `account`, as kept in its token secret `secret_name`: issuer
    /// [`LEGACY_ISSUER`], Kubernetes' `kubernetes.io/serviceaccount/*` claims, no expiry.
    ///
    /// # Errors
    ///
    /// [`IssueError::MissingField`] when the account lacks a name, namespace or uid.
    pub fn issue_legacy(
        &self,
        account: &ServiceAccount,
        secret_name: &str,
    ) -> Result<String, IssueError> {
        let (name, uid) = required(&account.metadata, BoundKind::ServiceAccount)?;
        let namespace = account
            .metadata
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or(IssueError::MissingField {
                kind: BoundKind::ServiceAccount,
                field: "metadata.namespace",
            })?;
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(LEGACY_ISSUER));
        claims.insert(
            "kubernetes.io/serviceaccount/namespace".into(),
            Value::from(namespace),
        );
        claims.insert(
            "kubernetes.io/serviceaccount/secret.name".into(),
            Value::from(secret_name),
        );
        claims.insert(
            "kubernetes.io/serviceaccount/service-account.name".into(),
            Value::from(name),
        );
        claims.insert(
            "kubernetes.io/serviceaccount/service-account.uid".into(),
            Value::from(uid),
        );
        claims.insert(
            "sub".into(),
            Value::from(service_account_username(namespace, name)),
        );
        self.sign(&Value::Object(claims))
    }

    fn sign(&self, claims: &Value) -> Result<String, IssueError> {
        let header = json!({"alg": ALGORITHM, "kid": self.key.key_id()});
        let encode = |value: &Value| {
            serde_json::to_vec(value)
                .map(b64)
                .map_err(|error| IssueError::Sign(error.to_string()))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let signature = self.key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64(signature)))
    }
}

// ---------------------------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------------------------

/// A token was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT this reads: not three base64url parts, not JSON, claims of the wrong types.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token is signed with another algorithm than [`ALGORITHM`].
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No key of the verifier verifies the signature.
    #[error("invalid token signature")]
    BadSignature,
    /// The token is another issuer's.
    #[error("token issuer {issuer:?} is not accepted")]
    WrongIssuer {
        /// The token's `iss` (empty when absent).
        issuer: String,
    },
    /// The token has expired (more than [`LEEWAY`] ago).
    #[error("service account token has expired (at {expired_at})")]
    Expired {
        /// The token's `exp`.
        expired_at: Timestamp,
    },
    /// The token is not valid yet (`nbf` more than [`LEEWAY`] ahead).
    #[error("service account token is not valid yet (until {not_before})")]
    NotYetValid {
        /// The token's `nbf`.
        not_before: Timestamp,
    },
    /// The token claims to be issued in the future (`iat` more than [`LEEWAY`] ahead).
    #[error("service account token is issued in the future (at {issued_at})")]
    IssuedInTheFuture {
        /// The token's `iat`.
        issued_at: Timestamp,
    },
    /// None of the token's audiences is one of the expected ones.
    #[error("token audiences {token:?} are invalid for the target audiences {expected:?}")]
    AudienceMismatch {
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences asked for.
        expected: Vec<String>,
    },
    /// A claim Kubernetes requires is missing or inconsistent (`sub`, the account, `exp`).
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
    /// (Live check) An object the token refers to does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Its kind.
        kind: BoundKind,
        /// Its name.
        name: String,
    },
    /// (Live check) An object the token refers to was replaced by another of the same name.
    #[error("{kind} {name:?} has UID {found}, the token claims {claimed}")]
    UidMismatch {
        /// Its kind.
        kind: BoundKind,
        /// Its name.
        name: String,
        /// The uid in the token.
        claimed: String,
        /// The uid of the object now.
        found: String,
    },
    /// (Live check) An object the token refers to is being deleted.
    #[error("{kind} {name:?} has been deleted")]
    Deleted {
        /// Its kind.
        kind: BoundKind,
        /// Its name.
        name: String,
    },
    /// (Live check) A legacy token is no longer the one its secret holds.
    #[error("token does not match the server's copy in secret {secret:?}")]
    Invalidated {
        /// The token's secret.
        secret: String,
    },
    /// (Live check) The API could not be asked.
    #[error("cannot check the token: {0}")]
    Api(#[from] StatusError),
}

/// Something a token refers to: a name and, except for legacy secrets, a uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundRef {
    /// The name.
    pub name: String,
    /// The uid (empty when the token does not give it).
    pub uid: String,
}

/// Who a verified token speaks for: a service account, and what the token is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountIdentity {
    /// The account's namespace.
    pub namespace: String,
    /// The account's name.
    pub name: String,
    /// The account's uid.
    pub uid: String,
    /// The bound pod.
    pub pod: Option<BoundRef>,
    /// The bound secret (for a legacy token: its secret, by name).
    pub secret: Option<BoundRef>,
    /// The node (bound, or the bound pod's).
    pub node: Option<BoundRef>,
    /// Whether this is a legacy (secret-based) token.
    pub legacy: bool,
    /// The token's id (`jti`).
    pub token_id: Option<String>,
    /// The audiences the token was accepted for.
    pub audiences: Vec<String>,
    /// When the token expires (legacy tokens never do).
    pub expires_at: Option<Timestamp>,
}

impl ServiceAccountIdentity {
    /// The user name: `system:serviceaccount:<namespace>:<name>`.
    pub fn username(&self) -> String {
        service_account_username(&self.namespace, &self.name)
    }

    /// The groups: `system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
    /// `system:authenticated`.
    pub fn groups(&self) -> Vec<String> {
        vec![
            ALL_SERVICE_ACCOUNTS_GROUP.to_owned(),
            format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{}", self.namespace),
            AUTHENTICATED_GROUP.to_owned(),
        ]
    }

    /// The extra attributes, as Kubernetes gives them: the bound pod's name and uid, the node's
    /// name (and uid), the credential id `JTI=<jti>`.
    pub fn extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        if let Some(pod) = self
            .pod
            .as_ref()
            .filter(|p| !p.name.is_empty() && !p.uid.is_empty())
        {
            extra.insert(POD_NAME_EXTRA.to_owned(), vec![pod.name.clone()]);
            extra.insert(POD_UID_EXTRA.to_owned(), vec![pod.uid.clone()]);
        }
        if let Some(node) = self.node.as_ref().filter(|n| !n.name.is_empty()) {
            extra.insert(NODE_NAME_EXTRA.to_owned(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                extra.insert(NODE_UID_EXTRA.to_owned(), vec![node.uid.clone()]);
            }
        }
        if let Some(id) = self.token_id.as_ref().filter(|id| !id.is_empty()) {
            extra.insert(CREDENTIAL_ID_EXTRA.to_owned(), vec![format!("JTI={id}")]);
        }
        extra
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// `aud`: one string or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct Reference {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

impl Reference {
    fn into_bound(self) -> BoundRef {
        BoundRef {
            name: self.name,
            uid: self.uid,
        }
    }
}

#[derive(Deserialize, Default)]
struct PrivateClaims {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    serviceaccount: Option<Reference>,
    #[serde(default)]
    pod: Option<Reference>,
    #[serde(default)]
    secret: Option<Reference>,
    #[serde(default)]
    node: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<PrivateClaims>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/secret.name")]
    legacy_secret: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_name: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_uid: Option<String>,
}

/// A NumericDate claim as a timestamp (fractions of seconds dropped, as go-jose does).
fn numeric_date(value: f64, claim: &str) -> Result<Timestamp, TokenError> {
    if !value.is_finite() {
        return Err(TokenError::Malformed(format!("{claim} is not a date")));
    }
    #[allow(clippy::cast_possible_truncation)]
    let seconds = value.trunc() as i64;
    Timestamp::from_second(seconds)
        .map_err(|_| TokenError::Malformed(format!("{claim} is out of range")))
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| TokenError::Malformed(format!("the {what} is not valid: {error}")))
}

fn non_empty(value: Option<String>, claim: &str) -> Result<String, TokenError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TokenError::InvalidClaims(format!("{claim} claim is missing")))
}

/// Checks service-account tokens: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    keys: Vec<VerifyingKey>,
    issuers: Vec<String>,
    legacy: bool,
    audiences: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl TokenVerifier {
    /// A verifier of the tokens of `issuer` signed by any of `keys` (and of legacy tokens signed
    /// by them), whose implicit audience (that of the API server, for tokens without one and
    /// requests that name none) is `issuer`, on the system clock.
    pub fn new(issuer: &str, keys: impl IntoIterator<Item = VerifyingKey>) -> TokenVerifier {
        TokenVerifier {
            keys: keys.into_iter().collect(),
            issuers: vec![issuer.to_owned()],
            legacy: true,
            audiences: vec![issuer.to_owned()],
            clock: Arc::new(SystemClock),
        }
    }

    /// Also accepts tokens of `issuer` (Kubernetes accepts several, while moving to a new one).
    #[must_use]
    pub fn also_accept_issuer(mut self, issuer: impl Into<String>) -> TokenVerifier {
        self.issuers.push(issuer.into());
        self
    }

    /// Whether legacy (secret-based) tokens are accepted (they are by default).
    #[must_use]
    pub fn accept_legacy(mut self, accept: bool) -> TokenVerifier {
        self.legacy = accept;
        self
    }

    /// The implicit audiences (Kubernetes' `--api-audiences`). Empty: audiences are not
    /// checked.
    #[must_use]
    pub fn with_audiences(mut self, audiences: Vec<String>) -> TokenVerifier {
        self.audiences = audiences;
        self
    }

    /// The clock the token times are checked against.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TokenVerifier {
        self.clock = clock;
        self
    }

    /// Verifies `token` for `audiences` (the implicit audiences when empty), offline: signature,
    /// issuer, times, audience, claims. What it is bound to is not looked at: see
    /// [`TokenVerifier::verify_live`].
    ///
    /// # Errors
    ///
    /// The [`TokenError`] of the first check that fails, in Kubernetes' order: format,
    /// algorithm, issuer, signature, times, claims, audience.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountIdentity, TokenError> {
        let parts: Vec<&str> = token.trim().split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            return Err(TokenError::Malformed(
                "a token has three dot-separated parts".into(),
            ));
        };
        let signed = format!("{header}.{payload}");
        let header: Header = decode_part(header, "header")?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed(
                "critical header parameters are not supported".into(),
            ));
        }
        if header.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm(header.alg));
        }
        let claims: Claims = decode_part(payload, "payload")?;
        let issuer = claims.iss.clone().unwrap_or_default();
        let legacy = if self.issuers.contains(&issuer) {
            false
        } else if self.legacy && issuer == LEGACY_ISSUER {
            true
        } else {
            return Err(TokenError::WrongIssuer { issuer });
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .map_err(|_| TokenError::BadSignature)?;
        let mut candidates: Vec<&VerifyingKey> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| &k.key_id == kid).collect(),
            None => Vec::new(),
        };
        if candidates.is_empty() {
            candidates = self.keys.iter().collect();
        }
        if !candidates
            .iter()
            .any(|key| key.verifies(signed.as_bytes(), &signature))
        {
            return Err(TokenError::BadSignature);
        }
        let identity = if legacy {
            self.legacy_identity(claims)?
        } else {
            self.bound_identity(claims)?
        };
        self.check_audiences(identity, audiences)
    }

    fn legacy_identity(&self, claims: Claims) -> Result<ServiceAccountIdentity, TokenError> {
        let subject = non_empty(claims.sub, "sub")?;
        let namespace = non_empty(claims.legacy_namespace, "namespace")?;
        let secret = non_empty(claims.legacy_secret, "secretName")?;
        let name = non_empty(claims.legacy_name, "serviceAccountName")?;
        let uid = non_empty(claims.legacy_uid, "serviceAccountUID")?;
        if subject != service_account_username(&namespace, &name) {
            return Err(TokenError::InvalidClaims("sub claim is invalid".into()));
        }
        Ok(ServiceAccountIdentity {
            namespace,
            name,
            uid,
            pod: None,
            secret: Some(BoundRef {
                name: secret,
                uid: String::new(),
            }),
            node: None,
            legacy: true,
            token_id: None,
            audiences: audiences_of(claims.aud),
            expires_at: None,
        })
    }

    fn bound_identity(&self, claims: Claims) -> Result<ServiceAccountIdentity, TokenError> {
        let now = self.clock.now();
        let leeway = SignedDuration::try_from(LEEWAY).unwrap_or(SignedDuration::ZERO);
        let later = now.checked_add(leeway).unwrap_or(now);
        let earlier = now.checked_sub(leeway).unwrap_or(now);
        let exp = claims
            .exp
            .ok_or_else(|| TokenError::InvalidClaims("exp claim is missing".into()))?;
        let expires_at = numeric_date(exp, "exp")?;
        if let Some(nbf) = claims.nbf {
            let not_before = numeric_date(nbf, "nbf")?;
            if later < not_before {
                return Err(TokenError::NotYetValid { not_before });
            }
        }
        if earlier > expires_at {
            return Err(TokenError::Expired {
                expired_at: expires_at,
            });
        }
        if let Some(iat) = claims.iat {
            let issued_at = numeric_date(iat, "iat")?;
            if later < issued_at {
                return Err(TokenError::IssuedInTheFuture { issued_at });
            }
        }
        let private = claims
            .kubernetes
            .ok_or_else(|| TokenError::InvalidClaims("kubernetes.io claim is missing".into()))?;
        let account = private.serviceaccount.unwrap_or_default();
        let namespace = non_empty(Some(private.namespace), "namespace")?;
        let name = non_empty(Some(account.name), "serviceaccount.name")?;
        let uid = non_empty(Some(account.uid), "serviceaccount.uid")?;
        let subject = non_empty(claims.sub, "sub")?;
        if subject != service_account_username(&namespace, &name) {
            return Err(TokenError::InvalidClaims("sub claim is invalid".into()));
        }
        Ok(ServiceAccountIdentity {
            namespace,
            name,
            uid,
            pod: private.pod.map(Reference::into_bound),
            secret: private.secret.map(Reference::into_bound),
            node: private.node.map(Reference::into_bound),
            legacy: false,
            token_id: claims.jti.filter(|id| !id.is_empty()),
            audiences: audiences_of(claims.aud),
            expires_at: Some(expires_at),
        })
    }

    /// Kubernetes' audience rule: a token without audiences has the implicit ones, a request
    /// without audiences wants the implicit ones, and they must share one (unless there are no
    /// implicit audiences).
    fn check_audiences(
        &self,
        mut identity: ServiceAccountIdentity,
        requested: &[String],
    ) -> Result<ServiceAccountIdentity, TokenError> {
        let token = if identity.audiences.is_empty() {
            self.audiences.clone()
        } else {
            std::mem::take(&mut identity.audiences)
        };
        let expected = if requested.is_empty() {
            self.audiences.as_slice()
        } else {
            requested
        };
        let shared: Vec<String> = token
            .iter()
            .filter(|audience| expected.contains(audience))
            .cloned()
            .collect();
        if shared.is_empty() && !self.audiences.is_empty() {
            return Err(TokenError::AudienceMismatch {
                token,
                expected: expected.to_vec(),
            });
        }
        identity.audiences = shared;
        Ok(identity)
    }

    /// [`TokenVerifier::verify`], then checks against the API, as Kubernetes' validators do,
    /// that what the token names is still there: the account, with the token's uid, not deleted;
    /// the bound pod and secret likewise (deleted means deleted more than [`LEEWAY`] ago, as a
    /// pod keeps its token during its grace period); the bound node for node-bound tokens; for a
    /// legacy token, its secret, not being deleted and still holding this very token.
    ///
    /// # Errors
    ///
    /// Those of [`TokenVerifier::verify`], then [`TokenError::NotFound`],
    /// [`TokenError::UidMismatch`], [`TokenError::Deleted`], [`TokenError::Invalidated`], or
    /// [`TokenError::Api`] when the API cannot be asked.
    pub async fn verify_live(
        &self,
        client: &Client,
        token: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountIdentity, TokenError> {
        let identity = self.verify(token, audiences)?;
        let namespace = identity.namespace.as_str();
        let now = self.clock.now();
        let leeway = SignedDuration::try_from(LEEWAY).unwrap_or(SignedDuration::ZERO);
        let cutoff = now.checked_sub(leeway).unwrap_or(now);
        let deleted_long_ago = |meta: &ObjectMeta| {
            meta.deletion_timestamp
                .as_ref()
                .is_some_and(|time| time.0 < cutoff)
        };

        if identity.legacy {
            let secret_name = identity
                .secret
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret =
                secrets
                    .get_opt(&secret_name)
                    .await?
                    .ok_or_else(|| TokenError::NotFound {
                        kind: BoundKind::Secret,
                        name: secret_name.clone(),
                    })?;
            if secret.metadata.deletion_timestamp.is_some() {
                return Err(TokenError::Deleted {
                    kind: BoundKind::Secret,
                    name: secret_name,
                });
            }
            let held = secret
                .data
                .as_ref()
                .and_then(|data| data.get(TOKEN_KEY))
                .map(|bytes| bytes.0.as_slice());
            if held != Some(token.trim().as_bytes()) {
                return Err(TokenError::Invalidated {
                    secret: secret_name,
                });
            }
        }

        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let account =
            accounts
                .get_opt(&identity.name)
                .await?
                .ok_or_else(|| TokenError::NotFound {
                    kind: BoundKind::ServiceAccount,
                    name: identity.name.clone(),
                })?;
        let account_uid = account.metadata.uid.clone().unwrap_or_default();
        if account_uid != identity.uid {
            return Err(TokenError::UidMismatch {
                kind: BoundKind::ServiceAccount,
                name: identity.name.clone(),
                claimed: identity.uid.clone(),
                found: account_uid,
            });
        }
        let account_gone = if identity.legacy {
            account.metadata.deletion_timestamp.is_some()
        } else {
            deleted_long_ago(&account.metadata)
        };
        if account_gone {
            return Err(TokenError::Deleted {
                kind: BoundKind::ServiceAccount,
                name: identity.name.clone(),
            });
        }
        if identity.legacy {
            return Ok(identity);
        }

        if let Some(secret) = &identity.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let found = api.get_opt(&secret.name).await?;
            check_bound(
                BoundKind::Secret,
                secret,
                found.as_ref().map(|s| &s.metadata),
                &deleted_long_ago,
            )?;
        }
        if let Some(pod) = &identity.pod {
            let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let found = api.get_opt(&pod.name).await?;
            check_bound(
                BoundKind::Pod,
                pod,
                found.as_ref().map(|p| &p.metadata),
                &deleted_long_ago,
            )?;
        } else if let Some(node) = &identity.node {
            let api: Api<Node> = Api::all(client.clone());
            let found = api.get_opt(&node.name).await?;
            check_bound(
                BoundKind::Node,
                node,
                found.as_ref().map(|n| &n.metadata),
                &deleted_long_ago,
            )?;
        }
        Ok(identity)
    }
}

fn audiences_of(audience: Option<Audience>) -> Vec<String> {
    match audience {
        None => Vec::new(),
        Some(Audience::One(one)) if one.is_empty() => Vec::new(),
        Some(Audience::One(one)) => vec![one],
        Some(Audience::Many(many)) => many,
    }
}

fn check_bound(
    kind: BoundKind,
    claimed: &BoundRef,
    found: Option<&ObjectMeta>,
    deleted_long_ago: &dyn Fn(&ObjectMeta) -> bool,
) -> Result<(), TokenError> {
    let meta = found.ok_or_else(|| TokenError::NotFound {
        kind,
        name: claimed.name.clone(),
    })?;
    let uid = meta.uid.clone().unwrap_or_default();
    if uid != claimed.uid {
        return Err(TokenError::UidMismatch {
            kind,
            name: claimed.name.clone(),
            claimed: claimed.uid.clone(),
            found: uid,
        });
    }
    if deleted_long_ago(meta) {
        return Err(TokenError::Deleted {
            kind,
            name: claimed.name.clone(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The token controller
// ---------------------------------------------------------------------------------------------

/// A sync of the token controller failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenControllerError {
    /// A request to the API failed.
    #[error("cannot {action} {namespace}/{name}: {source}")]
    Api {
        /// What the controller was doing.
        action: &'static str,
        /// The namespace.
        namespace: String,
        /// The name of the object.
        name: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// A token could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// The name of an account's token secret is taken by another secret.
    #[error("secret {namespace}/{name} exists and is not the token secret of its account")]
    NameTaken {
        /// The namespace.
        namespace: String,
        /// The secret's name.
        name: String,
    },
}

fn api_error(
    action: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(StatusError) -> TokenControllerError {
    let namespace = namespace.to_owned();
    let name = name.to_owned();
    move |source| TokenControllerError::Api {
        action,
        namespace,
        name,
        source,
    }
}

/// The name of the token secret the controller keeps for an account:
/// `<account>-token-<5 characters>`, the characters derived from the account's uid (so an account
/// made again under the same name gets another secret), the prefix cut as Kubernetes' name
/// generator cuts it.
pub fn token_secret_name(account: &str, uid: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut prefix = format!("{account}-token-");
    if prefix.len() > 58 {
        let mut cut = 58;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    let digest = Sha256::digest(uid.as_bytes());
    let suffix: String = digest
        .iter()
        .take(5)
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

/// The account a token secret names, if it is one.
fn account_of(secret: &Secret) -> Option<ObjectRef> {
    if secret.type_.as_deref() != Some(SERVICE_ACCOUNT_TOKEN_TYPE) {
        return None;
    }
    let name = secret
        .metadata
        .annotations
        .as_ref()?
        .get(SERVICE_ACCOUNT_NAME_ANNOTATION)
        .filter(|name| !name.is_empty())?;
    let namespace = secret.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

fn annotated_uid(secret: &Secret) -> &str {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default()
}

fn owned_by(secret: &Secret, uid: &str) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.kind == "ServiceAccount" && owner.uid == uid)
}

/// Keeps a token secret for every service account, fills in token secrets, and deletes those of
/// accounts that are gone: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct TokenController {
    client: Client,
    issuer: TokenIssuer,
    root_ca: Option<Vec<u8>>,
}

impl TokenController {
    /// The controller of the accounts `client` serves, signing with `issuer`.
    pub fn new(client: Client, issuer: TokenIssuer) -> TokenController {
        TokenController {
            client,
            issuer,
            root_ca: None,
        }
    }

    /// The CA bundle (PEM) token secrets carry as `ca.crt` (none by default).
    #[must_use]
    pub fn root_ca(mut self, pem: impl Into<Vec<u8>>) -> TokenController {
        self.root_ca = Some(pem.into()).filter(|ca: &Vec<u8>| !ca.is_empty());
        self
    }

    /// Runs the controller until `shutdown` resolves (then returns once the syncs in flight are
    /// done).
    pub async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let shutdown = shutdown.shared();
        let client = self.client;
        let accounts_api: Api<ServiceAccount> = Api::all(client.clone());
        let controller = Controller::new(accounts_api.clone(), WatcherConfig::default());
        let accounts = controller.store();
        let deletions: WorkQueue<ObjectRef> = WorkQueue::new();
        let stale = deletions.clone();
        let tokens_only =
            WatcherConfig::default().fields(&format!("type={SERVICE_ACCOUNT_TOKEN_TYPE}"));
        let (controller, secrets) = controller.watches_with(
            Api::<Secret>::all(client.clone()),
            tokens_only,
            move |secret: &Secret| {
                let Some(key) = account_of(secret) else {
                    return Vec::new();
                };
                let uid = annotated_uid(secret);
                match accounts.get(&key) {
                    Some(account)
                        if uid.is_empty() || account.metadata.uid.as_deref() == Some(uid) =>
                    {
                        vec![key]
                    }
                    // The account is gone or was replaced (or the cache is behind: the deletion
                    // checks with the API).
                    Some(_) => {
                        stale.add(key.clone());
                        vec![key]
                    }
                    None => {
                        stale.add(key);
                        Vec::new()
                    }
                }
            },
        );
        let context = Arc::new(TokenContext {
            client,
            issuer: self.issuer,
            root_ca: self.root_ca,
            secrets,
        });
        let sync = controller.run(sync_account, Arc::clone(&context), shutdown.clone());
        let feed = feed_deletions(accounts_api, deletions.clone(), None, shutdown.clone());
        let delete = deletions.run_until(
            2,
            |key: ObjectRef| delete_stale_tokens(Arc::clone(&context), key),
            shutdown,
        );
        tokio::join!(sync, feed, delete);
    }
}

struct TokenContext {
    client: Client,
    issuer: TokenIssuer,
    root_ca: Option<Vec<u8>>,
    secrets: Reader<Secret>,
}

/// Fills in the account's token secrets and makes its own if it has none.
async fn sync_account(
    account: Arc<ServiceAccount>,
    context: Arc<TokenContext>,
) -> Result<Action, TokenControllerError> {
    let (Some(namespace), Some(name), Some(uid)) = (
        account.metadata.namespace.as_deref(),
        account.metadata.name.as_deref(),
        account.metadata.uid.as_deref(),
    ) else {
        return Ok(Action::await_change());
    };
    let key = ObjectRef::new(name).within(namespace);
    let secrets: Vec<Arc<Secret>> = context
        .secrets
        .state()
        .into_iter()
        .filter(|secret| account_of(secret).as_ref() == Some(&key))
        .collect();
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    for secret in &secrets {
        let annotated = annotated_uid(secret);
        if annotated.is_empty() || annotated == uid {
            populate(&context, &api, &account, secret).await?;
        }
    }
    if secrets.iter().any(|secret| owned_by(secret, uid)) {
        return Ok(Action::await_change());
    }

    let secret_name = token_secret_name(name, uid);
    let token = context.issuer.issue_legacy(&account, &secret_name)?;
    let mut data = BTreeMap::from([
        (TOKEN_KEY.to_owned(), ByteString(token.into_bytes())),
        (
            NAMESPACE_KEY.to_owned(),
            ByteString(namespace.as_bytes().to_vec()),
        ),
    ]);
    if let Some(ca) = &context.root_ca {
        data.insert(ROOT_CA_KEY.to_owned(), ByteString(ca.clone()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(BTreeMap::from([
                (SERVICE_ACCOUNT_NAME_ANNOTATION.to_owned(), name.to_owned()),
                (SERVICE_ACCOUNT_UID_ANNOTATION.to_owned(), uid.to_owned()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "ServiceAccount".to_owned(),
                name: name.to_owned(),
                uid: uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        type_: Some(SERVICE_ACCOUNT_TOKEN_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Action::await_change()),
        // The namespace is going: no new secrets in it.
        Err(error)
            if error.reason == StatusReason::NotFound
                || (error.reason == StatusReason::Forbidden
                    && error.message.contains("is being terminated")) =>
        {
            Ok(Action::await_change())
        }
        Err(error) if error.reason == StatusReason::AlreadyExists => {
            // The cache is behind, or the name is someone else's.
            let existing = api.get_opt(&secret_name).await.map_err(api_error(
                "read secret",
                namespace,
                &secret_name,
            ))?;
            match existing {
                Some(existing) if owned_by(&existing, uid) => Ok(Action::await_change()),
                Some(_) => Err(TokenControllerError::NameTaken {
                    namespace: namespace.to_owned(),
                    name: secret_name,
                }),
                None => Err(api_error("create secret", namespace, &secret_name)(error)),
            }
        }
        Err(error) => Err(api_error("create secret", namespace, &secret_name)(error)),
    }
}

/// Fills in what a token secret of `account` lacks (Kubernetes' `generateTokenIfNeeded`): its
/// token, its namespace, the CA; and then the account annotations.
async fn populate(
    context: &TokenContext,
    api: &Api<Secret>,
    account: &ServiceAccount,
    cached: &Secret,
) -> Result<(), TokenControllerError> {
    let data = cached.data.clone().unwrap_or_default();
    let missing = |key: &str| data.get(key).is_none_or(|value| value.0.is_empty());
    let needs_ca = context
        .root_ca
        .as_ref()
        .is_some_and(|ca| data.get(ROOT_CA_KEY).map(|value| &value.0) != Some(ca));
    let needs_namespace = missing(NAMESPACE_KEY);
    let needs_token = missing(TOKEN_KEY);
    if !needs_ca && !needs_namespace && !needs_token {
        return Ok(());
    }
    let namespace = cached.metadata.namespace.clone().unwrap_or_default();
    let secret_name = cached.metadata.name.clone().unwrap_or_default();
    let mut secret = cached.clone();
    let mut data = data;
    if let (true, Some(ca)) = (needs_ca, &context.root_ca) {
        data.insert(ROOT_CA_KEY.to_owned(), ByteString(ca.clone()));
    }
    if needs_namespace {
        data.insert(
            NAMESPACE_KEY.to_owned(),
            ByteString(namespace.as_bytes().to_vec()),
        );
    }
    if needs_token {
        let token = context.issuer.issue_legacy(account, &secret_name)?;
        data.insert(TOKEN_KEY.to_owned(), ByteString(token.into_bytes()));
    }
    secret.data = Some(data);
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(
        SERVICE_ACCOUNT_NAME_ANNOTATION.to_owned(),
        account.metadata.name.clone().unwrap_or_default(),
    );
    annotations.insert(
        SERVICE_ACCOUNT_UID_ANNOTATION.to_owned(),
        account.metadata.uid.clone().unwrap_or_default(),
    );
    api.replace(&secret_name, &PostParams::default(), &secret)
        .await
        .map_err(api_error("update secret", &namespace, &secret_name))?;
    Ok(())
}

/// Deletes the token secrets naming the account `key` unless it exists (asking the API) and they
/// are for it (no uid annotation, or its uid).
async fn delete_stale_tokens(
    context: Arc<TokenContext>,
    key: ObjectRef,
) -> Result<Action, TokenControllerError> {
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(Action::await_change());
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(context.client.clone(), namespace);
    let account = accounts.get_opt(&key.name).await.map_err(api_error(
        "read service account",
        namespace,
        &key.name,
    ))?;
    let live_uid = account.and_then(|account| account.metadata.uid);
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let params = ListParams::default().fields(&format!("type={SERVICE_ACCOUNT_TOKEN_TYPE}"));
    let secrets =
        api.list(&params)
            .await
            .map_err(api_error("list secrets", namespace, &key.name))?;
    for secret in secrets {
        if account_of(&secret).as_ref() != Some(&key) {
            continue;
        }
        let annotated = annotated_uid(&secret);
        let keep = live_uid
            .as_deref()
            .is_some_and(|uid| annotated.is_empty() || annotated == uid);
        if keep {
            continue;
        }
        let secret_name = secret.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&secret_name, &params).await {
            Ok(_) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(api_error("delete secret", namespace, &secret_name)(error)),
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_stable_short_and_valid() {
        let name = token_secret_name("default", "0a1b2c");
        assert!(name.starts_with("default-token-"));
        assert_eq!(name.len(), "default-token-".len() + 5);
        assert_eq!(name, token_secret_name("default", "0a1b2c"));
        assert_ne!(name, token_secret_name("default", "other"));
        let long = token_secret_name(&"a".repeat(250), "uid");
        assert_eq!(long.len(), 63);
        assert!(crate::validation::names::dns1123_subdomain(&long).is_empty());
    }

    #[test]
    fn keys_round_trip_through_every_format() {
        let key = SigningKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        for loaded in [
            SigningKey::from_pkcs8_der(&der).unwrap(),
            SigningKey::from_bytes(&der).unwrap(),
            SigningKey::from_pem(&pem).unwrap(),
            SigningKey::from_seed(&key.to_seed()[..]).unwrap(),
        ] {
            assert_eq!(loaded.key_id(), key.key_id());
        }
        let public = key.verifying_key();
        let reloaded =
            VerifyingKey::from_public_key_pem(&public.to_public_key_pem().unwrap()).unwrap();
        assert_eq!(&reloaded, public);
        let jwk = public.jwk();
        assert_eq!(jwk["kid"], key.key_id());
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert!(matches!(
            SigningKey::from_bytes(b"not a key"),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            SigningKey::from_seed(&[0u8; 32]),
            Err(KeyError::Invalid(_))
        ));
    }
}
