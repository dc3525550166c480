//! Service-account tokens: signing keys (including keys made by `openssl`), bound tokens as
//! Kubernetes writes them, their verification (each failure its own error, key rotation, the live
//! checks against the API), and the token controller over a `MemoryStore`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, DeleteParams, Deletion, ListParams, PostParams};
use orchestra_core::clock::{Clock, TokioClock};
use orchestra_core::controllers::token::{
    ALGORITHM, ALL_SERVICE_ACCOUNTS_GROUP, AUTHENTICATED_GROUP, BoundKind, BoundObject, BoundRef,
    CREDENTIAL_ID_EXTRA, DEFAULT_ISSUER, IssueError, LEEWAY, LEGACY_ISSUER, NAMESPACE_KEY,
    NODE_NAME_EXTRA, NODE_UID_EXTRA, POD_NAME_EXTRA, POD_UID_EXTRA, ROOT_CA_KEY,
    SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_TYPE, SERVICE_ACCOUNT_UID_ANNOTATION,
    SigningKey, TOKEN_KEY, TokenController, TokenError, TokenIssuer, TokenVerifier, VerifyingKey,
    token_secret_name,
};
use orchestra_core::resource::ResourceExt;
use orchestra_core::store::MemoryStore;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;

const START: &str = "2026-01-01T00:00:00Z";
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A wall clock that moves only when told to.
#[derive(Debug)]
struct ManualClock(Mutex<Timestamp>);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn at(time: &str) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(time.parse().unwrap())))
    }

    fn set(&self, time: Timestamp) {
        *self.0.lock().unwrap() = time;
    }

    fn shared(self: &Arc<Self>) -> Arc<dyn Clock> {
        Arc::clone(self) as Arc<dyn Clock>
    }
}

fn secs(seconds: i64) -> SignedDuration {
    SignedDuration::from_secs(seconds)
}

fn audiences(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn meta_in(namespace: &str, name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: Some(uid.into()),
        ..ObjectMeta::default()
    }
}

/// An account as the API returns it (offline tests).
fn account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta_in("ci", "builder", "4a6f9b3e-0000-4000-8000-000000000001"),
        ..ServiceAccount::default()
    }
}

fn pod_spec(node: Option<&str>) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "web".into(),
            image: Some("nginx".into()),
            ..Container::default()
        }],
        node_name: node.map(str::to_owned),
        ..PodSpec::default()
    }
}

/// A pod of the account's namespace, on `node-1` (offline tests).
fn offline_pod() -> Pod {
    Pod {
        metadata: meta_in("ci", "web-0", "4a6f9b3e-0000-4000-8000-000000000002"),
        spec: Some(pod_spec(Some("node-1"))),
        ..Pod::default()
    }
}

fn offline_node() -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("node-1".into()),
            uid: Some("4a6f9b3e-0000-4000-8000-000000000003".into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The header and claims of a token.
fn parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form");
    (decode(parts[0]), decode(parts[1]))
}

/// A token with any header and claims, signed (ES256) by `key`.
fn sign_raw(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(serde_json::to_vec(header).unwrap()),
        b64(serde_json::to_vec(claims).unwrap())
    );
    let signer = p256::ecdsa::SigningKey::from_slice(&key.to_seed()[..]).unwrap();
    let signature: p256::ecdsa::Signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.to_bytes()))
}

/// The claims of a bound token for [`account`], issued at `now`, valid an hour.
fn bound_claims(now: i64) -> Value {
    json!({
        "aud": [DEFAULT_ISSUER],
        "exp": now + 3600,
        "iat": now,
        "iss": DEFAULT_ISSUER,
        "kubernetes.io": {
            "namespace": "ci",
            "serviceaccount": {"name": "builder", "uid": "4a6f9b3e-0000-4000-8000-000000000001"},
        },
        "nbf": now,
        "sub": "system:serviceaccount:ci:builder",
    })
}

/// An issuer on a manual clock at [`START`], and that clock.
fn manual_issuer() -> (TokenIssuer, Arc<ManualClock>) {
    let clock = ManualClock::at(START);
    let issuer = TokenIssuer::new(SigningKey::generate().unwrap()).with_clock(clock.shared());
    (issuer, clock)
}

// ---------------------------------------------------------------------------------------------
// Issuing and verifying, offline
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pod_bound_token_has_the_claims_kubernetes_writes() {
    let (issuer, _clock) = manual_issuer();
    let account = account();
    let pod = offline_pod();
    let node = offline_node();
    let audience = audiences(&["https://vault.example.com"]);
    let token = issuer
        .issue_bound(
            &account,
            &audience,
            HOUR,
            Some(BoundObject::Pod {
                pod: &pod,
                node: Some(&node),
            }),
        )
        .unwrap();

    let (header, claims) = parts(&token);
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": issuer.key().key_id()})
    );
    let now = START.parse::<Timestamp>().unwrap().as_second();
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&jti).unwrap().get_version_num(), 4);
    assert_eq!(
        claims,
        json!({
            "aud": ["https://vault.example.com"],
            "exp": now + 3600,
            "iat": now,
            "iss": DEFAULT_ISSUER,
            "jti": jti,
            "kubernetes.io": {
                "namespace": "ci",
                "node": {"name": "node-1", "uid": "4a6f9b3e-0000-4000-8000-000000000003"},
                "pod": {"name": "web-0", "uid": "4a6f9b3e-0000-4000-8000-000000000002"},
                "serviceaccount": {"name": "builder", "uid": "4a6f9b3e-0000-4000-8000-000000000001"},
            },
            "nbf": now,
            "sub": "system:serviceaccount:ci:builder",
        })
    );
    // Keys in sorted order, as Go writes them.
    let payload = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let order: Vec<usize> = ["\"aud\"", "\"exp\"", "\"iat\"", "\"iss\"", "\"jti\""]
        .iter()
        .chain(&["\"kubernetes.io\"", "\"nbf\"", "\"sub\""])
        .map(|key| payload.find(key).unwrap())
        .collect();
    assert!(order.is_sorted(), "{payload}");
    // The signature is r ‖ s, 64 bytes.
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(2).unwrap())
            .unwrap()
            .len(),
        64
    );

    let identity = issuer.verifier().verify(&token, &audience).unwrap();
    assert_eq!(identity.namespace, "ci");
    assert_eq!(identity.name, "builder");
    assert_eq!(identity.uid, "4a6f9b3e-0000-4000-8000-000000000001");
    assert_eq!(
        identity.pod,
        Some(BoundRef {
            name: "web-0".into(),
            uid: "4a6f9b3e-0000-4000-8000-000000000002".into(),
        })
    );
    assert_eq!(
        identity.node.as_ref().map(|n| n.name.as_str()),
        Some("node-1")
    );
    assert_eq!(identity.secret, None);
    assert!(!identity.legacy);
    assert_eq!(identity.token_id.as_deref(), Some(jti.as_str()));
    assert_eq!(identity.audiences, audience);
    assert_eq!(
        identity.expires_at,
        Some(Timestamp::from_second(now + 3600).unwrap())
    );
    assert_eq!(identity.username(), "system:serviceaccount:ci:builder");
    assert_eq!(
        identity.groups(),
        [
            ALL_SERVICE_ACCOUNTS_GROUP.to_owned(),
            format!("{ALL_SERVICE_ACCOUNTS_GROUP}:ci"),
            AUTHENTICATED_GROUP.to_owned(),
        ]
    );
    let extra = identity.extra();
    assert_eq!(extra[POD_NAME_EXTRA], ["web-0"]);
    assert_eq!(
        extra[POD_UID_EXTRA],
        ["4a6f9b3e-0000-4000-8000-000000000002"]
    );
    assert_eq!(extra[NODE_NAME_EXTRA], ["node-1"]);
    assert_eq!(
        extra[NODE_UID_EXTRA],
        ["4a6f9b3e-0000-4000-8000-000000000003"]
    );
    assert_eq!(extra[CREDENTIAL_ID_EXTRA], [format!("JTI={jti}")]);

    // Without the node, the token names the pod's node by name only.
    let token = issuer.issue(&account, &audience, HOUR, Some(&pod)).unwrap();
    let (_, claims) = parts(&token);
    assert_eq!(claims["kubernetes.io"]["node"], json!({"name": "node-1"}));
    let identity = issuer.verifier().verify(&token, &audience).unwrap();
    let extra = identity.extra();
    assert_eq!(extra[NODE_NAME_EXTRA], ["node-1"]);
    assert!(!extra.contains_key(NODE_UID_EXTRA));

    // Every token has its own id.
    let again = issuer.issue(&account, &audience, HOUR, Some(&pod)).unwrap();
    assert_ne!(parts(&again).1["jti"], claims["jti"]);
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let (issuer, _clock) = manual_issuer();
    let verifier = issuer.verifier();
    let account = account();
    let vault = audiences(&["vault"]);
    let token = issuer.issue(&account, &vault, HOUR, None).unwrap();

    // The request names no audience: the API server's own (the issuer) is wanted.
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::AudienceMismatch {
            token: vault.clone(),
            expected: audiences(&[DEFAULT_ISSUER]),
        })
    );
    assert_eq!(
        verifier.verify(&token, &audiences(&["nats"])),
        Err(TokenError::AudienceMismatch {
            token: vault.clone(),
            expected: audiences(&["nats"]),
        })
    );
    let identity = verifier
        .verify(&token, &audiences(&["nats", "vault"]))
        .unwrap();
    assert_eq!(identity.audiences, vault);

    // A token without audiences is for the implicit ones.
    let token = issuer.issue(&account, &[], HOUR, None).unwrap();
    assert!(parts(&token).1.get("aud").is_none());
    let identity = verifier.verify(&token, &[]).unwrap();
    assert_eq!(identity.audiences, audiences(&[DEFAULT_ISSUER]));
    assert!(matches!(
        verifier.verify(&token, &vault),
        Err(TokenError::AudienceMismatch { .. })
    ));

    // Configured audiences (`--api-audiences`), and none: audiences are not checked.
    let token = issuer.issue(&account, &vault, HOUR, None).unwrap();
    let api = verifier
        .clone()
        .with_audiences(audiences(&["api", "vault"]));
    assert_eq!(api.verify(&token, &[]).unwrap().audiences, vault);
    let unchecked = verifier.clone().with_audiences(Vec::new());
    assert!(unchecked.verify(&token, &[]).is_ok());
    assert!(unchecked.verify(&token, &audiences(&["nats"])).is_ok());
}

#[test]
fn an_expired_token_is_refused_after_the_leeway() {
    let (issuer, clock) = manual_issuer();
    let verifier = issuer.verifier();
    let start: Timestamp = START.parse().unwrap();
    let token = issuer
        .issue(&account(), &[], Duration::from_secs(600), None)
        .unwrap();
    let exp = parts(&token).1["exp"].as_i64().unwrap();
    assert_eq!(exp, start.as_second() + 600);
    let expires_at = Timestamp::from_second(exp).unwrap();
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap();

    for offset in [0, 600, 600 + leeway] {
        clock.set(start + secs(offset));
        assert!(verifier.verify(&token, &[]).is_ok(), "at +{offset}s");
    }
    clock.set(start + secs(600 + leeway + 1));
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::Expired {
            expired_at: expires_at
        })
    );
    clock.set(start + secs(86_400));
    assert!(matches!(
        verifier.verify(&token, &[]),
        Err(TokenError::Expired { .. })
    ));
    // Another verifier, on its own clock, years later.
    let later = TokenVerifier::new(DEFAULT_ISSUER, [issuer.key().verifying_key().clone()])
        .with_clock(ManualClock::at("2030-01-01T00:00:00Z").shared());
    assert!(matches!(
        later.verify(&token, &[]),
        Err(TokenError::Expired { .. })
    ));

    // Expiries are whole seconds, at least one.
    assert_eq!(
        issuer.issue(&account(), &[], Duration::from_millis(999), None),
        Err(IssueError::InvalidExpiry(Duration::from_millis(999)))
    );
    assert!(matches!(
        issuer.issue(&account(), &[], Duration::MAX, None),
        Err(IssueError::InvalidExpiry(_))
    ));
}

#[test]
fn a_token_from_the_future_is_refused() {
    let (issuer, clock) = manual_issuer();
    let verifier = issuer.verifier();
    let start: Timestamp = START.parse().unwrap();
    let token = issuer.issue(&account(), &[], HOUR, None).unwrap();
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap();

    clock.set(start - secs(leeway));
    assert!(verifier.verify(&token, &[]).is_ok(), "within the leeway");
    clock.set(start - secs(leeway + 1));
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::NotYetValid { not_before: start })
    );

    // `iat` ahead without `nbf`.
    clock.set(start);
    let now = start.as_second();
    let mut claims = bound_claims(now);
    claims.as_object_mut().unwrap().remove("nbf");
    claims["iat"] = json!(now + leeway + 5);
    let header = json!({"alg": ALGORITHM, "kid": issuer.key().key_id()});
    let token = sign_raw(issuer.key(), &header, &claims);
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::IssuedInTheFuture {
            issued_at: Timestamp::from_second(now + leeway + 5).unwrap()
        })
    );
    claims["iat"] = json!(now + leeway);
    assert!(
        verifier
            .verify(&sign_raw(issuer.key(), &header, &claims), &[])
            .is_ok()
    );
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let (issuer, clock) = manual_issuer();
    let verifier = issuer.verifier();
    let other = TokenIssuer::new(SigningKey::generate().unwrap()).with_clock(clock.shared());
    assert_ne!(other.key().key_id(), issuer.key().key_id());
    let token = other.issue(&account(), &[], HOUR, None).unwrap();
    assert!(other.verifier().verify(&token, &[]).is_ok());
    assert_eq!(verifier.verify(&token, &[]), Err(TokenError::BadSignature));

    // Another key claiming this key's id.
    let header = json!({"alg": ALGORITHM, "kid": issuer.key().key_id()});
    let now = START.parse::<Timestamp>().unwrap().as_second();
    let forged = sign_raw(other.key(), &header, &bound_claims(now));
    assert_eq!(verifier.verify(&forged, &[]), Err(TokenError::BadSignature));
    // ... or no id at all: every key is tried, none verifies.
    let forged = sign_raw(other.key(), &json!({"alg": ALGORITHM}), &bound_claims(now));
    assert_eq!(verifier.verify(&forged, &[]), Err(TokenError::BadSignature));
    let genuine = sign_raw(issuer.key(), &json!({"alg": ALGORITHM}), &bound_claims(now));
    assert!(verifier.verify(&genuine, &[]).is_ok());

    // Changed claims under a genuine signature.
    let token = issuer.issue(&account(), &[], HOUR, None).unwrap();
    let pieces: Vec<&str> = token.split('.').collect();
    let mut claims = decode(pieces[1]);
    claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    claims["sub"] = json!("system:serviceaccount:ci:admin");
    let tampered = format!(
        "{}.{}.{}",
        pieces[0],
        b64(serde_json::to_vec(&claims).unwrap()),
        pieces[2]
    );
    assert_eq!(
        verifier.verify(&tampered, &[]),
        Err(TokenError::BadSignature)
    );

    // A broken signature: a flipped byte, cut short, empty, not base64url.
    let mut signature = URL_SAFE_NO_PAD.decode(pieces[2]).unwrap();
    signature[10] ^= 0x01;
    let signed = format!("{}.{}", pieces[0], pieces[1]);
    for broken in [
        format!("{signed}.{}", b64(&signature)),
        format!("{signed}.{}", b64(&signature[..63])),
        format!("{signed}."),
        format!("{signed}.!!!!"),
    ] {
        assert_eq!(verifier.verify(&broken, &[]), Err(TokenError::BadSignature));
    }
    assert!(verifier.verify(&token, &[]).is_ok());
}

#[test]
fn a_token_of_another_issuer_is_refused() {
    let clock = ManualClock::at(START);
    let key = SigningKey::generate().unwrap();
    let ours = TokenIssuer::new(key.clone()).with_clock(clock.shared());
    let theirs = TokenIssuer::new(key)
        .with_issuer("https://oidc.example.com")
        .with_clock(clock.shared());
    assert_eq!(theirs.issuer(), "https://oidc.example.com");
    let token = theirs.issue(&account(), &[], HOUR, None).unwrap();
    assert_eq!(parts(&token).1["iss"], "https://oidc.example.com");

    let verifier = ours.verifier();
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::WrongIssuer {
            issuer: "https://oidc.example.com".into()
        })
    );
    // A verifier that accepts both (moving to a new issuer).
    let both = verifier
        .clone()
        .also_accept_issuer("https://oidc.example.com")
        .with_audiences(audiences(&[DEFAULT_ISSUER, "https://oidc.example.com"]));
    assert!(both.verify(&token, &[]).is_ok());
    assert!(
        both.verify(&ours.issue(&account(), &[], HOUR, None).unwrap(), &[])
            .is_ok()
    );

    // No issuer at all.
    let now = START.parse::<Timestamp>().unwrap().as_second();
    let mut claims = bound_claims(now);
    claims.as_object_mut().unwrap().remove("iss");
    let token = sign_raw(ours.key(), &json!({"alg": ALGORITHM}), &claims);
    assert_eq!(
        verifier.verify(&token, &[]),
        Err(TokenError::WrongIssuer {
            issuer: String::new()
        })
    );

    // Legacy tokens, unless refused.
    let legacy = ours
        .issue_legacy(&account(), "builder-token-abcde")
        .unwrap();
    assert!(verifier.verify(&legacy, &[]).unwrap().legacy);
    assert_eq!(
        verifier.clone().accept_legacy(false).verify(&legacy, &[]),
        Err(TokenError::WrongIssuer {
            issuer: LEGACY_ISSUER.into()
        })
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let (issuer, _clock) = manual_issuer();
    let verifier = issuer.verifier();
    let token = issuer.issue(&account(), &[], HOUR, None).unwrap();
    let pieces: Vec<&str> = token.split('.').collect();
    let header = b64(br#"{"alg":"ES256"}"#);
    let cases = [
        String::new(),
        "not a token".to_owned(),
        format!("{}.{}", pieces[0], pieces[1]),
        format!("{token}.{}", pieces[2]),
        format!("!!.{}.{}", pieces[1], pieces[2]),
        format!("{}.{}.{}", b64("not json"), pieces[1], pieces[2]),
        format!("{}.{}.{}", b64("{}"), pieces[1], pieces[2]),
        format!("{header}.%%%.{}", pieces[2]),
        format!("{header}.{}.{}", b64("[1, 2]"), pieces[2]),
        format!("{header}.{}.{}", b64(r#"{"iss": 7}"#), pieces[2]),
        format!("{header}.{}.{}", b64(r#"{"aud": [1]}"#), pieces[2]),
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256","crit":["exp"]}"#),
            pieces[1],
            pieces[2]
        ),
    ];
    for case in cases {
        assert!(
            matches!(verifier.verify(&case, &[]), Err(TokenError::Malformed(_))),
            "{case:?}: {:?}",
            verifier.verify(&case, &[])
        );
    }
    // Surrounding whitespace is not a malformation.
    assert!(verifier.verify(&format!("  {token}\n"), &[]).is_ok());

    // Other algorithms.
    for alg in ["RS256", "HS256", "none", "ES384"] {
        let forged = format!(
            "{}.{}.{}",
            b64(serde_json::to_vec(&json!({"alg": alg})).unwrap()),
            pieces[1],
            pieces[2]
        );
        assert_eq!(
            verifier.verify(&forged, &[]),
            Err(TokenError::UnsupportedAlgorithm(alg.into()))
        );
    }
}

#[test]
fn claims_kubernetes_requires_are_checked() {
    let (issuer, _clock) = manual_issuer();
    let verifier = issuer.verifier();
    let now = START.parse::<Timestamp>().unwrap().as_second();
    let header = json!({"alg": ALGORITHM, "kid": issuer.key().key_id()});
    let sign = |claims: &Value| sign_raw(issuer.key(), &header, claims);
    assert!(verifier.verify(&sign(&bound_claims(now)), &[]).is_ok());

    // `aud` may be a single string.
    let mut claims = bound_claims(now);
    claims["aud"] = json!(DEFAULT_ISSUER);
    assert!(verifier.verify(&sign(&claims), &[]).is_ok());

    type Change = fn(&mut Value);
    let broken: [(&str, Change); 6] = [
        ("no exp", |c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        ("no sub", |c| {
            c.as_object_mut().unwrap().remove("sub");
        }),
        ("another sub", |c| {
            c["sub"] = json!("system:serviceaccount:ci:admin")
        }),
        ("no kubernetes.io", |c| {
            c.as_object_mut().unwrap().remove("kubernetes.io");
        }),
        ("no account uid", |c| {
            c["kubernetes.io"]["serviceaccount"]
                .as_object_mut()
                .unwrap()
                .remove("uid");
        }),
        ("no namespace", |c| {
            c["kubernetes.io"]["namespace"] = json!("")
        }),
    ];
    for (what, change) in broken {
        let mut claims = bound_claims(now);
        change(&mut claims);
        assert!(
            matches!(
                verifier.verify(&sign(&claims), &[]),
                Err(TokenError::InvalidClaims(_))
            ),
            "{what}: {:?}",
            verifier.verify(&sign(&claims), &[])
        );
    }
}

#[test]
fn tokens_of_a_rotated_key_verify_while_the_old_key_is_trusted() {
    let clock = ManualClock::at(START);
    let old = TokenIssuer::new(SigningKey::generate().unwrap()).with_clock(clock.shared());
    let new = TokenIssuer::new(SigningKey::generate().unwrap()).with_clock(clock.shared());
    let old_token = old.issue(&account(), &[], HOUR, None).unwrap();
    let new_token = new.issue(&account(), &[], HOUR, None).unwrap();
    assert_eq!(parts(&old_token).0["kid"], old.key().key_id());
    assert_eq!(parts(&new_token).0["kid"], new.key().key_id());

    // During the rotation: both keys, in either order.
    for keys in [
        [
            old.key().verifying_key().clone(),
            new.key().verifying_key().clone(),
        ],
        [
            new.key().verifying_key().clone(),
            old.key().verifying_key().clone(),
        ],
    ] {
        let verifier = TokenVerifier::new(DEFAULT_ISSUER, keys).with_clock(clock.shared());
        assert!(verifier.verify(&old_token, &[]).is_ok());
        assert!(verifier.verify(&new_token, &[]).is_ok());
        // Legacy tokens too.
        let legacy = old.issue_legacy(&account(), "builder-token-abcde").unwrap();
        assert!(verifier.verify(&legacy, &[]).is_ok());
    }
    // After it: the old key's tokens are refused.
    let verifier = new.verifier();
    assert!(verifier.verify(&new_token, &[]).is_ok());
    assert_eq!(
        verifier.verify(&old_token, &[]),
        Err(TokenError::BadSignature)
    );
    // No keys: nothing verifies.
    let none = TokenVerifier::new(DEFAULT_ISSUER, []).with_clock(clock.shared());
    assert_eq!(none.verify(&new_token, &[]), Err(TokenError::BadSignature));

    // A public key read back from PEM or DER verifies as well.
    let public = new.key().verifying_key();
    let from_pem = VerifyingKey::from_public_key_pem(&public.to_public_key_pem().unwrap()).unwrap();
    let from_der = VerifyingKey::from_public_key_der(&public.to_public_key_der().unwrap()).unwrap();
    assert_eq!(from_pem.key_id(), new.key().key_id());
    let verifier =
        TokenVerifier::new(DEFAULT_ISSUER, [from_pem, from_der]).with_clock(clock.shared());
    assert!(verifier.verify(&new_token, &[]).is_ok());
}

#[test]
fn issuing_needs_a_complete_account_and_a_pod_of_its_namespace() {
    let (issuer, _clock) = manual_issuer();
    for (field, change) in [
        (
            "metadata.name",
            (|a: &mut ServiceAccount| a.metadata.name = None) as fn(&mut _),
        ),
        ("metadata.uid", |a| a.metadata.uid = Some(String::new())),
        ("metadata.namespace", |a| a.metadata.namespace = None),
    ] {
        let mut account = account();
        change(&mut account);
        let expected = Err(IssueError::MissingField {
            kind: BoundKind::ServiceAccount,
            field,
        });
        assert_eq!(issuer.issue(&account, &[], HOUR, None), expected);
        assert_eq!(issuer.issue_legacy(&account, "s"), expected);
    }
    let mut pod = offline_pod();
    pod.metadata.namespace = Some("prod".into());
    assert_eq!(
        issuer.issue(&account(), &[], HOUR, Some(&pod)),
        Err(IssueError::NamespaceMismatch {
            kind: BoundKind::Pod,
            expected: "ci".into(),
            found: "prod".into(),
        })
    );
    let mut pod = offline_pod();
    pod.metadata.uid = None;
    assert_eq!(
        issuer.issue(&account(), &[], HOUR, Some(&pod)),
        Err(IssueError::MissingField {
            kind: BoundKind::Pod,
            field: "metadata.uid",
        })
    );
}

#[test]
fn a_legacy_token_has_the_claims_kubernetes_writes() {
    let (issuer, _clock) = manual_issuer();
    let token = issuer
        .issue_legacy(&account(), "builder-token-abcde")
        .unwrap();
    let (header, claims) = parts(&token);
    assert_eq!(header["alg"], ALGORITHM);
    assert_eq!(
        claims,
        json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": "ci",
            "kubernetes.io/serviceaccount/secret.name": "builder-token-abcde",
            "kubernetes.io/serviceaccount/service-account.name": "builder",
            "kubernetes.io/serviceaccount/service-account.uid": "4a6f9b3e-0000-4000-8000-000000000001",
            "sub": "system:serviceaccount:ci:builder",
        })
    );
    let identity = issuer.verifier().verify(&token, &[]).unwrap();
    assert!(identity.legacy);
    assert_eq!(identity.username(), "system:serviceaccount:ci:builder");
    assert_eq!(identity.uid, "4a6f9b3e-0000-4000-8000-000000000001");
    assert_eq!(
        identity.secret.map(|s| s.name),
        Some("builder-token-abcde".to_owned())
    );
    assert_eq!(identity.expires_at, None);
    assert_eq!(identity.token_id, None);
    // It never expires.
    let verifier = issuer
        .verifier()
        .with_clock(ManualClock::at("2100-01-01T00:00:00Z").shared());
    assert!(verifier.verify(&token, &[]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Keys made by openssl
// ---------------------------------------------------------------------------------------------

/// Whether `openssl` runs; when it does not, the test fails in CI and is skipped elsewhere.
fn openssl_available(test: &str) -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: openssl is required in CI (Debian's `openssl` package)"
        );
        eprintln!("{test}: skipped, openssl is not installed");
    }
    found
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("orchestra-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ASN.1 DER ECDSA signature (what openssl reads and writes) from r ‖ s.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let mut value: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if value.first().is_none_or(|b| b & 0x80 != 0) {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(value.len()).unwrap()];
        out.extend(value);
        out
    }
    let mut body = integer(&raw[..32]);
    body.extend(integer(&raw[32..]));
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

/// r ‖ s from an ASN.1 DER ECDSA signature.
fn raw_signature(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    assert_eq!(usize::from(der[1]), der.len() - 2);
    let mut rest = &der[2..];
    let mut raw = Vec::new();
    for _ in 0..2 {
        assert_eq!(rest[0], 0x02);
        let length = usize::from(rest[1]);
        let value: Vec<u8> = rest[2..2 + length]
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        raw.extend(std::iter::repeat_n(0u8, 32 - value.len()));
        raw.extend(value);
        rest = &rest[2 + length..];
    }
    raw
}

#[test]
fn keys_made_by_openssl_are_read() {
    if !openssl_available("keys_made_by_openssl_are_read") {
        return;
    }
    let dir = TempDir::new("openssl-keys");
    let path = |name: &str| dir.0.join(name);
    // What Kubernetes' documentation and most guides run; `ecparam` also writes the curve's
    // parameters before the key unless told `-noout`.
    openssl(
        &dir.0,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-out",
            "ecparam.pem",
        ],
    );
    openssl(
        &dir.0,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "sec1.pem",
        ],
    );
    openssl(
        &dir.0,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "pkcs8.pem",
        ],
    );
    let with_parameters = std::fs::read_to_string(path("ecparam.pem")).unwrap();
    assert!(with_parameters.starts_with("-----BEGIN EC PARAMETERS-----"));
    assert!(
        std::fs::read_to_string(path("sec1.pem"))
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(path("pkcs8.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    let clock = ManualClock::at(START);
    for file in ["ecparam.pem", "sec1.pem", "pkcs8.pem"] {
        let pem = std::fs::read_to_string(path(file)).unwrap();
        let key = SigningKey::from_pem(&pem).unwrap_or_else(|e| panic!("{file}: {e}"));
        let same = SigningKey::from_bytes(pem.as_bytes()).unwrap();
        assert_eq!(same.key_id(), key.key_id(), "{file}");
        // Other blocks after the key are not read either.
        let followed = format!(
            "{pem}{}",
            &with_parameters[..with_parameters.find("-----BEGIN EC PRIVATE").unwrap()]
        );
        assert_eq!(
            SigningKey::from_pem(&followed).unwrap().key_id(),
            key.key_id(),
            "{file}"
        );

        // The same key in DER, both formats.
        openssl(
            &dir.0,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", file, "-outform", "DER", "-out", "k8.der",
            ],
        );
        openssl(
            &dir.0,
            &["ec", "-in", file, "-outform", "DER", "-out", "k1.der"],
        );
        let pkcs8_der = std::fs::read(path("k8.der")).unwrap();
        let sec1_der = std::fs::read(path("k1.der")).unwrap();
        for loaded in [
            SigningKey::from_pkcs8_der(&pkcs8_der).unwrap(),
            SigningKey::from_bytes(&pkcs8_der).unwrap(),
            SigningKey::from_sec1_der(&sec1_der).unwrap(),
            SigningKey::from_bytes(&sec1_der).unwrap(),
        ] {
            assert_eq!(loaded.key_id(), key.key_id(), "{file}");
        }

        // The public half openssl derives is ours, and the key id is Kubernetes':
        // base64url(SHA-256(DER SubjectPublicKeyInfo)).
        openssl(&dir.0, &["pkey", "-in", file, "-pubout", "-out", "pub.pem"]);
        openssl(
            &dir.0,
            &[
                "pkey", "-in", file, "-pubout", "-outform", "DER", "-out", "pub.der",
            ],
        );
        let public_pem = std::fs::read_to_string(path("pub.pem")).unwrap();
        let public_der = std::fs::read(path("pub.der")).unwrap();
        let public = VerifyingKey::from_public_key_pem(&public_pem).unwrap();
        assert_eq!(&public, key.verifying_key(), "{file}");
        assert_eq!(public.to_public_key_der().unwrap(), public_der);
        assert_eq!(key.key_id(), b64(Sha256::digest(&public_der)));
        assert_eq!(public.jwk()["kid"], key.key_id());

        // Our tokens verify with openssl...
        let issuer = TokenIssuer::new(key).with_clock(clock.shared());
        let token = issuer.issue(&account(), &[], HOUR, None).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        std::fs::write(path("input"), signed).unwrap();
        std::fs::write(
            path("sig.der"),
            der_signature(&URL_SAFE_NO_PAD.decode(signature).unwrap()),
        )
        .unwrap();
        openssl(
            &dir.0,
            &[
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig.der",
                "input",
            ],
        );
        // ... and openssl's signatures verify as tokens.
        openssl(
            &dir.0,
            &[
                "dgst",
                "-sha256",
                "-sign",
                file,
                "-out",
                "openssl.der",
                "input",
            ],
        );
        let by_openssl = format!(
            "{signed}.{}",
            b64(raw_signature(&std::fs::read(path("openssl.der")).unwrap()))
        );
        let verifier = TokenVerifier::new(DEFAULT_ISSUER, [public]).with_clock(clock.shared());
        assert_eq!(
            verifier.verify(&by_openssl, &[]).unwrap().username(),
            "system:serviceaccount:ci:builder"
        );
    }

    // Another curve is refused.
    openssl(
        &dir.0,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "secp384r1",
            "-noout",
            "-out",
            "p384.pem",
        ],
    );
    let p384 = std::fs::read_to_string(path("p384.pem")).unwrap();
    assert!(SigningKey::from_pem(&p384).is_err());
    assert!(SigningKey::from_bytes(p384.as_bytes()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Live checks and the token controller, on a MemoryStore
// ---------------------------------------------------------------------------------------------

async fn client() -> Client {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(START.parse().unwrap()))
        .build();
    client.bootstrap().await.unwrap();
    client
}

/// An issuer on the client's clock.
fn issuer_for(client: &Client) -> TokenIssuer {
    TokenIssuer::new(SigningKey::generate().unwrap()).with_clock(Arc::clone(client.clock()))
}

async fn create_account(client: &Client, namespace: &str, name: &str) -> ServiceAccount {
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta(name),
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap()
}

async fn create_pod(client: &Client, namespace: &str, name: &str, node: Option<&str>) -> Pod {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &Pod {
                metadata: meta(name),
                spec: Some(pod_spec(node)),
                ..Pod::default()
            },
        )
        .await
        .unwrap()
}

/// Waits (in paused time) until `check` holds, for at most a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(start_paused = true)]
async fn verify_live_follows_the_bound_pod() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let account = create_account(&client, "default", "builder").await;
    let pod = create_pod(&client, "default", "web-0", Some("node-1")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let token = issuer.issue(&account, &[], HOUR, Some(&pod)).unwrap();
    let identity = verifier.verify_live(&client, &token, &[]).await.unwrap();
    assert_eq!(identity.pod.as_ref().unwrap().uid, pod.uid().unwrap());

    // A pod on a node terminates gracefully: its token works through the grace period and the
    // leeway after it.
    let Deletion::InProgress(terminating) = pods
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("a pod on a node terminates gracefully");
    };
    let grace = terminating.metadata.deletion_grace_period_seconds.unwrap();
    assert!(grace > 0);
    let leeway = LEEWAY.as_secs();
    let grace = u64::try_from(grace).unwrap();
    tokio::time::sleep(Duration::from_secs(grace + leeway)).await;
    assert!(verifier.verify_live(&client, &token, &[]).await.is_ok());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::Deleted {
            kind: BoundKind::Pod,
            name: "web-0".into()
        })
    );
    // The offline check does not know.
    assert!(verifier.verify(&token, &[]).is_ok());

    // Gone.
    pods.delete("web-0", &DeleteParams::immediately())
        .await
        .unwrap();
    assert_eq!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::NotFound {
            kind: BoundKind::Pod,
            name: "web-0".into()
        })
    );

    // Another pod of the same name.
    let replacement = create_pod(&client, "default", "web-0", None).await;
    assert_eq!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::UidMismatch {
            kind: BoundKind::Pod,
            name: "web-0".into(),
            claimed: pod.uid().unwrap().to_owned(),
            found: replacement.uid().unwrap().to_owned(),
        })
    );
    let token = issuer
        .issue(&account, &[], HOUR, Some(&replacement))
        .unwrap();
    assert!(verifier.verify_live(&client, &token, &[]).await.is_ok());

    // The offline checks come first.
    tokio::time::sleep(HOUR + LEEWAY + Duration::from_secs(1)).await;
    assert!(matches!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::Expired { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn verify_live_follows_the_account() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account = create_account(&client, "default", "builder").await;
    let pod = create_pod(&client, "default", "web-0", None).await;
    let bound = issuer.issue(&account, &[], HOUR, Some(&pod)).unwrap();
    let unbound = issuer.issue(&account, &[], HOUR, None).unwrap();
    for token in [&bound, &unbound] {
        assert!(verifier.verify_live(&client, token, &[]).await.is_ok());
    }

    accounts
        .delete("builder", &DeleteParams::default())
        .await
        .unwrap();
    for token in [&bound, &unbound] {
        assert_eq!(
            verifier.verify_live(&client, token, &[]).await,
            Err(TokenError::NotFound {
                kind: BoundKind::ServiceAccount,
                name: "builder".into()
            })
        );
    }

    // Made again under the same name: another account.
    let again = create_account(&client, "default", "builder").await;
    assert_ne!(again.uid(), account.uid());
    for token in [&bound, &unbound] {
        assert_eq!(
            verifier.verify_live(&client, token, &[]).await,
            Err(TokenError::UidMismatch {
                kind: BoundKind::ServiceAccount,
                name: "builder".into(),
                claimed: account.uid().unwrap().to_owned(),
                found: again.uid().unwrap().to_owned(),
            })
        );
    }
    let fresh = issuer.issue(&again, &[], HOUR, Some(&pod)).unwrap();
    assert!(verifier.verify_live(&client, &fresh, &[]).await.is_ok());

    // An account held by a finalizer is deleted once the leeway has passed.
    let mut held = accounts.get("builder").await.unwrap();
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    accounts
        .replace("builder", &PostParams::default(), &held)
        .await
        .unwrap();
    let Deletion::InProgress(_) = accounts
        .delete("builder", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("the finalizer holds the account");
    };
    assert!(verifier.verify_live(&client, &fresh, &[]).await.is_ok());
    tokio::time::sleep(LEEWAY + Duration::from_secs(1)).await;
    assert_eq!(
        verifier.verify_live(&client, &fresh, &[]).await,
        Err(TokenError::Deleted {
            kind: BoundKind::ServiceAccount,
            name: "builder".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn verify_live_follows_a_bound_secret_or_node() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let account = create_account(&client, "default", "builder").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let secret = secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("session"),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let node = nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: meta("node-1"),
                ..Node::default()
            },
        )
        .await
        .unwrap();
    let by_secret = issuer
        .issue_bound(&account, &[], HOUR, Some(BoundObject::Secret(&secret)))
        .unwrap();
    let by_node = issuer
        .issue_bound(&account, &[], HOUR, Some(BoundObject::Node(&node)))
        .unwrap();
    let identity = verifier
        .verify_live(&client, &by_secret, &[])
        .await
        .unwrap();
    assert_eq!(identity.secret.unwrap().uid, secret.uid().unwrap());
    let identity = verifier.verify_live(&client, &by_node, &[]).await.unwrap();
    assert_eq!(identity.node.unwrap().uid, node.uid().unwrap());

    secrets
        .delete("session", &DeleteParams::default())
        .await
        .unwrap();
    nodes
        .delete("node-1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        verifier.verify_live(&client, &by_secret, &[]).await,
        Err(TokenError::NotFound {
            kind: BoundKind::Secret,
            name: "session".into()
        })
    );
    assert_eq!(
        verifier.verify_live(&client, &by_node, &[]).await,
        Err(TokenError::NotFound {
            kind: BoundKind::Node,
            name: "node-1".into()
        })
    );
}

/// A token controller running on its own task, until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(controller: TokenController) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        Running {
            stop,
            task: tokio::spawn(controller.run(async move {
                let _ = stopped.await;
            })),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops promptly")
            .unwrap();
    }
}

/// The token secrets of a namespace, by name.
async fn token_secrets(client: &Client, namespace: &str) -> Vec<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|secret| secret.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE))
        .collect()
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.as_slice())
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.annotations().get(key).map(String::as_str)
}

fn token_of(secret: &Secret) -> String {
    String::from_utf8(data(secret, TOKEN_KEY).expect("a token").to_vec()).unwrap()
}

async fn get_secret(client: &Client, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits until the secret exists with a token, and returns it.
async fn filled_secret(client: &Client, namespace: &str, name: &str) -> Secret {
    eventually(&format!("secret {name} has a token"), || async {
        get_secret(client, namespace, name)
            .await
            .is_some_and(|secret| data(&secret, TOKEN_KEY).is_some_and(|t| !t.is_empty()))
    })
    .await;
    get_secret(client, namespace, name).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_account_gets_a_token_secret() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let before = create_account(&client, "default", "builder").await;
    let controller = Running::start(
        TokenController::new(client.clone(), issuer.clone())
            .root_ca("-----BEGIN CERTIFICATE-----\n"),
    );
    let name = token_secret_name("builder", before.uid().unwrap());
    let secret = filled_secret(&client, "default", &name).await;

    assert_eq!(secret.type_.as_deref(), Some(SERVICE_ACCOUNT_TOKEN_TYPE));
    assert_eq!(
        annotation(&secret, SERVICE_ACCOUNT_NAME_ANNOTATION),
        Some("builder")
    );
    assert_eq!(
        annotation(&secret, SERVICE_ACCOUNT_UID_ANNOTATION),
        before.uid()
    );
    let owners = secret.metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "ServiceAccount");
    assert_eq!(owners[0].name, "builder");
    assert_eq!(owners[0].uid, before.uid().unwrap());
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(data(&secret, NAMESPACE_KEY), Some(&b"default"[..]));
    assert_eq!(
        data(&secret, ROOT_CA_KEY),
        Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
    );

    // The legacy token verifies, offline and live.
    let token = token_of(&secret);
    let identity = verifier.verify(&token, &[]).unwrap();
    assert!(identity.legacy);
    assert_eq!(identity.username(), "system:serviceaccount:default:builder");
    assert_eq!(identity.uid, before.uid().unwrap());
    assert_eq!(identity.secret.as_ref().unwrap().name, name);
    assert_eq!(identity.expires_at, None);
    assert!(verifier.verify_live(&client, &token, &[]).await.is_ok());

    // An account made while it runs, in another namespace.
    let later = create_account(&client, "kube-system", "deployer").await;
    let name = token_secret_name("deployer", later.uid().unwrap());
    let secret = filled_secret(&client, "kube-system", &name).await;
    assert_eq!(data(&secret, NAMESPACE_KEY), Some(&b"kube-system"[..]));
    assert!(
        verifier
            .verify_live(&client, &token_of(&secret), &[])
            .await
            .is_ok()
    );

    // One secret per account, however long it runs.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(token_secrets(&client, "default").await.len(), 1);
    assert_eq!(token_secrets(&client, "kube-system").await.len(), 1);
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_token_secret_is_made_again() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let account = create_account(&client, "default", "builder").await;
    let controller = Running::start(TokenController::new(client.clone(), issuer));
    let name = token_secret_name("builder", account.uid().unwrap());
    let first = filled_secret(&client, "default", &name).await;
    assert_eq!(data(&first, ROOT_CA_KEY), None, "no CA configured");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    // While it is gone, its token is refused.
    assert_eq!(
        verifier.verify_live(&client, &token_of(&first), &[]).await,
        Err(TokenError::NotFound {
            kind: BoundKind::Secret,
            name: name.clone()
        })
    );
    eventually("the token secret is made again", || async {
        get_secret(&client, "default", &name)
            .await
            .is_some_and(|secret| secret.uid() != first.uid())
    })
    .await;
    let second = filled_secret(&client, "default", &name).await;
    assert_eq!(
        annotation(&second, SERVICE_ACCOUNT_UID_ANNOTATION),
        account.uid()
    );
    assert!(
        verifier
            .verify_live(&client, &token_of(&second), &[])
            .await
            .is_ok()
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(token_secrets(&client, "default").await.len(), 1);
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn token_secrets_go_with_their_account() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account = create_account(&client, "default", "builder").await;
    let other = create_account(&client, "default", "deployer").await;
    let controller = Running::start(TokenController::new(client.clone(), issuer));
    let name = token_secret_name("builder", account.uid().unwrap());
    let other_name = token_secret_name("deployer", other.uid().unwrap());
    let secret = filled_secret(&client, "default", &name).await;
    filled_secret(&client, "default", &other_name).await;
    let token = token_of(&secret);

    accounts
        .delete("builder", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the account's token secret is deleted", || async {
        get_secret(&client, "default", &name).await.is_none()
    })
    .await;
    assert!(matches!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::NotFound { .. })
    ));
    assert!(
        get_secret(&client, "default", &other_name).await.is_some(),
        "other accounts keep theirs"
    );

    // Made again: a new account, with a new secret; the old token stays refused.
    let again = create_account(&client, "default", "builder").await;
    let new_name = token_secret_name("builder", again.uid().unwrap());
    assert_ne!(new_name, name);
    let fresh = filled_secret(&client, "default", &new_name).await;
    assert!(
        verifier
            .verify_live(&client, &token_of(&fresh), &[])
            .await
            .is_ok()
    );
    assert!(verifier.verify_live(&client, &token, &[]).await.is_err());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(token_secrets(&client, "default").await.len(), 2);

    // A token secret for an account that does not exist is deleted too.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut orphan = Secret {
        metadata: meta("ghost-token"),
        type_: Some(SERVICE_ACCOUNT_TOKEN_TYPE.into()),
        ..Secret::default()
    };
    orphan.metadata.annotations = Some(
        [(
            SERVICE_ACCOUNT_NAME_ANNOTATION.to_owned(),
            "ghost".to_owned(),
        )]
        .into(),
    );
    secrets
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    eventually("the orphan token secret is deleted", || async {
        get_secret(&client, "default", "ghost-token")
            .await
            .is_none()
    })
    .await;
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_token_secret_made_by_a_user_is_filled_in() {
    let client = client().await;
    let issuer = issuer_for(&client);
    let verifier = issuer.verifier();
    let account = create_account(&client, "default", "builder").await;
    let controller = Running::start(TokenController::new(client.clone(), issuer));
    let own = token_secret_name("builder", account.uid().unwrap());
    filled_secret(&client, "default", &own).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut requested = Secret {
        metadata: meta("builder-ci"),
        type_: Some(SERVICE_ACCOUNT_TOKEN_TYPE.into()),
        ..Secret::default()
    };
    requested.metadata.annotations = Some(
        [
            (
                SERVICE_ACCOUNT_NAME_ANNOTATION.to_owned(),
                "builder".to_owned(),
            ),
            ("team".to_owned(), "ci".to_owned()),
        ]
        .into(),
    );
    requested.data = Some([("extra".to_owned(), ByteString(b"kept".to_vec()))].into());
    secrets
        .create(&PostParams::default(), &requested)
        .await
        .unwrap();
    let filled = filled_secret(&client, "default", "builder-ci").await;
    assert_eq!(data(&filled, NAMESPACE_KEY), Some(&b"default"[..]));
    assert_eq!(data(&filled, "extra"), Some(&b"kept"[..]));
    assert_eq!(
        annotation(&filled, SERVICE_ACCOUNT_UID_ANNOTATION),
        account.uid()
    );
    assert_eq!(annotation(&filled, "team"), Some("ci"));
    assert_eq!(
        filled.metadata.owner_references, None,
        "the user's, not the controller's"
    );
    let token = token_of(&filled);
    let identity = verifier.verify_live(&client, &token, &[]).await.unwrap();
    assert_eq!(identity.secret.unwrap().name, "builder-ci");
    assert_eq!(identity.uid, account.uid().unwrap());

    // A token it was given is left alone, and no longer matches the old one.
    let mut changed = filled.clone();
    changed.data.as_mut().unwrap().insert(
        TOKEN_KEY.to_owned(),
        ByteString(b"rotated-by-hand".to_vec()),
    );
    secrets
        .replace("builder-ci", &PostParams::default(), &changed)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let kept = get_secret(&client, "default", "builder-ci").await.unwrap();
    assert_eq!(data(&kept, TOKEN_KEY), Some(&b"rotated-by-hand"[..]));
    assert_eq!(
        verifier.verify_live(&client, &token, &[]).await,
        Err(TokenError::Invalidated {
            secret: "builder-ci".into()
        })
    );
    // The controller's own secret is still the only one it made.
    assert_eq!(token_secrets(&client, "default").await.len(), 2);
    controller.stop().await;
}
