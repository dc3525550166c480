//! The `serviceaccounts/token` subresource: Kubernetes' TokenRequest API
//! (`pkg/registry/core/serviceaccount/storage/token.go`).
//!
//! See [`Client::create_token`] for the rules.
//!
//! # Differences from Kubernetes
//!
//! - A bound object that is missing or has another uid is refused with 422 Invalid naming
//!   `spec.boundObjectRef.name` or `spec.boundObjectRef.uid` (Kubernetes answers with the
//!   object's 404, and 409 for the uid).
//! - Expirations are shortened to 48 hours (Kubernetes has no maximum unless
//!   `--service-account-max-token-expiration` is set); Kubernetes' extension of the tokens of
//!   projected volumes to a year (`--service-account-extend-token-expiration`) is not done.

use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Client;
use crate::api::Api;
use crate::controllers::token::{BoundObject, TokenIssuer};
use crate::resource::ApiResource;
use crate::status::{StatusError, StatusReason};
use crate::validation::field::{Error, Path};

/// The lifetime of a token whose request names none (Kubernetes' default, an hour).
pub(crate) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The shortest lifetime a token may be asked for (Kubernetes' ten minutes).
pub(crate) const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The longest lifetime a token gets: longer requests are shortened to it (48 hours).
pub(crate) const MAX_EXPIRATION_SECONDS: i64 = 48 * 3600;

/// The TokenRequest kind, for the messages of invalid requests.
fn token_requests() -> ApiResource {
    ApiResource::new(
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        Some("tokenrequests"),
        true,
    )
}

fn issue_failed(error: impl std::fmt::Display) -> StatusError {
    StatusError::internal(format!("failed to generate token: {error}"))
}

/// The object a request binds its token to.
enum Bound {
    Pod(Box<Pod>, Option<Box<Node>>),
    Secret(Box<Secret>),
    Node(Box<Node>),
}

impl Bound {
    fn as_bound_object(&self) -> BoundObject<'_> {
        match self {
            Bound::Pod(pod, node) => BoundObject::Pod {
                pod,
                node: node.as_deref(),
            },
            Bound::Secret(secret) => BoundObject::Secret(secret),
            Bound::Node(node) => BoundObject::Node(node),
        }
    }

    fn uid(&self) -> Option<&str> {
        match self {
            Bound::Pod(pod, _) => pod.metadata.uid.as_deref(),
            Bound::Secret(secret) => secret.metadata.uid.as_deref(),
            Bound::Node(node) => node.metadata.uid.as_deref(),
        }
    }
}

impl Client {
    /// Signs the tokens of [`Client::create_token`] with `issuer` from now on, on the client's
    /// clock, for this client and every clone of it (the issuer the control plane makes once its
    /// keys are loaded). A [remote](Client::remote) client ignores it: its server signs.
    pub fn set_token_issuer(&self, issuer: TokenIssuer) {
        let issuer = issuer.with_clock(std::sync::Arc::clone(&self.inner.clock));
        let mut slot = self
            .inner
            .token_issuer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(issuer);
    }

    /// The issuer that signs this client's tokens, if one was given.
    pub fn token_issuer(&self) -> Option<TokenIssuer> {
        self.inner
            .token_issuer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks for a token of the service account `service_account` in `namespace`, as Kubernetes'
    /// `POST /api/v1/namespaces/{namespace}/serviceaccounts/{name}/token` (the TokenRequest
    /// API), signed by the client's [`TokenIssuer`] ([`ClientBuilder::token_issuer`](super::ClientBuilder::token_issuer),
    /// [`Client::set_token_issuer`]); a [remote](Client::remote) client asks its server.
    ///
    /// - The account must exist.
    /// - `spec.expirationSeconds` defaults to 3600, may not be under 600 (ten minutes), and is
    ///   shortened to 48 hours.
    /// - `spec.audiences` default to the issuer's name (the API server's own audience).
    /// - `spec.boundObjectRef`, when given, names a Pod, Secret (of `namespace`) or Node that
    ///   must exist, with that uid when one is given; a Pod must run as the account. The token
    ///   then dies with the object.
    ///
    /// The answer is the request, defaulted, with `status.token` and
    /// `status.expirationTimestamp`.
    ///
    /// Unlike Kubernetes, a bound object that is missing or has another uid is refused with 422
    /// Invalid naming `spec.boundObjectRef.name` or `spec.boundObjectRef.uid` (Kubernetes answers
    /// with the object's 404, and 409 for the uid); Kubernetes has no maximum lifetime unless
    /// `--service-account-max-token-expiration` is set, and extends the tokens of projected
    /// volumes to a year (not done here).
    ///
    /// # Errors
    ///
    /// 404 NotFound when the account does not exist; 422 Invalid for a bad request (the field
    /// named); 400 BadRequest for a pod running as another account or a kind no token binds
    /// to; 503 ServiceUnavailable when the client has no token issuer.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::api::{Api, Client, PostParams};
    /// use orchestra_core::controllers::token::{SigningKey, TokenIssuer};
    /// use orchestra_core::k8s::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    /// use orchestra_core::k8s::api::core::v1::ServiceAccount;
    /// use orchestra_core::store::MemoryStore;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let issuer = TokenIssuer::new(SigningKey::generate().unwrap());
    /// let client = Client::builder(MemoryStore::new()).token_issuer(issuer.clone()).build();
    /// client.bootstrap().await?;
    /// let mut account = ServiceAccount::default();
    /// account.metadata.name = Some("builder".into());
    /// Api::<ServiceAccount>::namespaced(client.clone(), "default")
    ///     .create(&PostParams::default(), &account)
    ///     .await?;
    ///
    /// let request = TokenRequest {
    ///     spec: TokenRequestSpec { expiration_seconds: Some(1800), ..TokenRequestSpec::default() },
    ///     ..TokenRequest::default()
    /// };
    /// let answer = client.create_token("default", "builder", &request).await?;
    /// let token = answer.status.unwrap().token;
    /// let identity = issuer.verifier().verify(&token, &[]).unwrap();
    /// assert_eq!(identity.username(), "system:serviceaccount:default:builder");
    /// # Ok::<(), orchestra_core::status::StatusError>(())
    /// # }).unwrap();
    /// ```
    pub async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport
                .create_token(namespace, service_account, request)
                .await;
        }
        let kind = token_requests();
        let invalid = |error: Error| StatusError::invalid(&kind, service_account, &[error]);
        let metadata = Path::new("metadata");
        if let Some(name) = request.metadata.name.as_deref().filter(|n| !n.is_empty())
            && name != service_account
        {
            return Err(invalid(Error::invalid(
                &metadata.child("name"),
                name,
                "must match the service account name if specified",
            )));
        }
        if let Some(ns) = request
            .metadata
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            && ns != namespace
        {
            return Err(invalid(Error::invalid(
                &metadata.child("namespace"),
                ns,
                "must match the service account namespace if specified",
            )));
        }
        let account = Api::<ServiceAccount>::namespaced(self.clone(), namespace)
            .get(service_account)
            .await?;
        let Some(issuer) = self.token_issuer() else {
            return Err(StatusError::new(
                StatusReason::ServiceUnavailable,
                "no token issuer configured: the API server cannot sign service-account tokens",
            ));
        };

        let mut answer = request.clone();
        answer.metadata.name = Some(service_account.to_owned());
        answer.metadata.namespace = Some(namespace.to_owned());
        answer.status = None;
        let spec = &mut answer.spec;
        if spec.audiences.is_empty() {
            spec.audiences = vec![issuer.issuer().to_owned()];
        }
        let expiration_path = Path::new("spec").child("expirationSeconds");
        let mut seconds = spec
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        if seconds < MIN_EXPIRATION_SECONDS {
            return Err(invalid(Error::invalid(
                &expiration_path,
                seconds,
                "may not specify a duration less than 10 minutes",
            )));
        }
        if seconds > 1 << 32 {
            return Err(invalid(Error::invalid(
                &expiration_path,
                seconds,
                "may not specify a duration larger than 2^32 seconds",
            )));
        }
        seconds = seconds.min(MAX_EXPIRATION_SECONDS);
        spec.expiration_seconds = Some(seconds);

        let bound = match &spec.bound_object_ref {
            None => None,
            Some(reference) => {
                let path = Path::new("spec").child("boundObjectRef");
                let api_version = reference.api_version.as_deref().unwrap_or("v1");
                let kind_name = reference.kind.as_deref().unwrap_or_default();
                let name = reference.name.as_deref().unwrap_or_default();
                if !(api_version.is_empty() || api_version == "v1") {
                    return Err(invalid(Error::not_supported(
                        &path.child("apiVersion"),
                        api_version,
                        &["v1"],
                    )));
                }
                if name.is_empty() {
                    return Err(invalid(Error::required(&path.child("name"), "")));
                }
                let missing = || {
                    invalid(Error::not_found(
                        &path.child("name"),
                        format!("{kind_name} {name}"),
                    ))
                };
                let found = match kind_name {
                    "Pod" => {
                        let Some(pod) = Api::<Pod>::namespaced(self.clone(), namespace)
                            .get_opt(name)
                            .await?
                        else {
                            return Err(missing());
                        };
                        let runs_as = pod
                            .spec
                            .as_ref()
                            .and_then(|spec| spec.service_account_name.as_deref())
                            .filter(|n| !n.is_empty())
                            .unwrap_or("default");
                        if runs_as != service_account {
                            return Err(StatusError::bad_request(
                                format!(
                                    "cannot bind token for serviceaccount {service_account:?} to pod running with different serviceaccount name."
                                ),
                                &[Error::invalid(
                                    &path.child("name"),
                                    name,
                                    &format!("the pod runs as service account {runs_as:?}"),
                                )],
                            ));
                        }
                        let node_name = pod
                            .spec
                            .as_ref()
                            .and_then(|spec| spec.node_name.clone())
                            .filter(|n| !n.is_empty());
                        let node = match node_name {
                            Some(node_name) => Api::<Node>::all(self.clone())
                                .get_opt(&node_name)
                                .await?
                                .map(Box::new),
                            None => None,
                        };
                        Bound::Pod(Box::new(pod), node)
                    }
                    "Secret" => match Api::<Secret>::namespaced(self.clone(), namespace)
                        .get_opt(name)
                        .await?
                    {
                        Some(secret) => Bound::Secret(Box::new(secret)),
                        None => return Err(missing()),
                    },
                    "Node" => match Api::<Node>::all(self.clone()).get_opt(name).await? {
                        Some(node) => Bound::Node(Box::new(node)),
                        None => return Err(missing()),
                    },
                    other => {
                        return Err(StatusError::bad_request(
                            format!("cannot bind token to object of type /v1, Kind={other}"),
                            &[Error::not_supported(
                                &path.child("kind"),
                                other,
                                &["Pod", "Secret", "Node"],
                            )],
                        ));
                    }
                };
                if let Some(uid) = reference.uid.as_deref().filter(|u| !u.is_empty())
                    && found.uid() != Some(uid)
                {
                    return Err(invalid(Error::invalid(
                        &path.child("uid"),
                        uid,
                        &format!(
                            "does not match the uid of {kind_name} {name}: the object might have been deleted and then recreated"
                        ),
                    )));
                }
                Some(found)
            }
        };

        let now = self.inner.clock.now();
        let lifetime = Duration::from_secs(seconds.unsigned_abs());
        let token = issuer
            .issue_bound(
                &account,
                &spec.audiences,
                lifetime,
                bound.as_ref().map(Bound::as_bound_object),
            )
            .map_err(issue_failed)?;
        let expires = now
            .checked_add(SignedDuration::from_secs(seconds))
            .map_err(issue_failed)?;
        answer.metadata.creation_timestamp = Some(Time(now));
        answer.status = Some(TokenRequestStatus {
            token,
            expiration_timestamp: Time(expires),
        });
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestSpec};
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;
    use crate::api::PostParams;
    use crate::clock::TokioClock;
    use crate::controllers::token::{DEFAULT_ISSUER, SigningKey};
    use crate::store::MemoryStore;

    async fn client() -> (Client, TokenIssuer) {
        let issuer = TokenIssuer::new(SigningKey::generate().unwrap());
        let client = Client::builder(MemoryStore::new())
            .clock(TokioClock::starting_at(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ))
            .token_issuer(issuer.clone())
            .build();
        client.bootstrap().await.unwrap();
        let mut account = ServiceAccount::default();
        account.metadata.name = Some("builder".into());
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let issuer = client.token_issuer().unwrap();
        (client, issuer)
    }

    async fn pod(client: &Client, name: &str, account: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.spec = Some(PodSpec {
            service_account_name: Some(account.into()),
            automount_service_account_token: Some(false),
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "main".into(),
                image: Some("main".into()),
                ..Default::default()
            }],
            ..PodSpec::default()
        });
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    fn bound_to(kind: &str, name: &str, uid: Option<&str>) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some(kind.into()),
                    name: Some(name.into()),
                    uid: uid.map(Into::into),
                }),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        }
    }

    fn cause_fields(error: &StatusError) -> Vec<String> {
        error
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .filter_map(|c| c.field.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_issued_with_kubernetes_defaults() {
        let (client, issuer) = client().await;
        let answer = client
            .create_token("default", "builder", &TokenRequest::default())
            .await
            .unwrap();
        assert_eq!(answer.spec.expiration_seconds, Some(3600));
        assert_eq!(answer.spec.audiences, vec![DEFAULT_ISSUER.to_owned()]);
        assert_eq!(answer.metadata.name.as_deref(), Some("builder"));
        let status = answer.status.unwrap();
        assert_eq!(
            status.expiration_timestamp.0.to_string(),
            "2026-01-01T01:00:00Z"
        );
        let identity = issuer.verifier().verify(&status.token, &[]).unwrap();
        assert_eq!(identity.username(), "system:serviceaccount:default:builder");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_bound_token_names_the_pod_and_dies_with_it() {
        let (client, issuer) = client().await;
        let web = pod(&client, "web", "builder").await;
        let uid = web.metadata.uid.clone().unwrap();
        let mut request = bound_to("Pod", "web", Some(&uid));
        request.spec.expiration_seconds = Some(7 * 24 * 3600);
        request.spec.audiences = vec!["vault".into()];
        let answer = client
            .create_token("default", "builder", &request)
            .await
            .unwrap();
        // Shortened to the maximum.
        assert_eq!(answer.spec.expiration_seconds, Some(MAX_EXPIRATION_SECONDS));
        let token = answer.status.unwrap().token;
        let identity = issuer
            .verifier()
            .verify(&token, &["vault".to_owned()])
            .unwrap();
        let extra = identity.extra();
        assert_eq!(
            extra.get(crate::controllers::token::POD_UID_EXTRA),
            Some(&vec![uid])
        );
        let verifier = issuer.verifier();
        let vault = ["vault".to_owned()];
        verifier.verify_live(&client, &token, &vault).await.unwrap();
        Api::<Pod>::namespaced(client.clone(), "default")
            .delete(
                "web",
                &crate::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(verifier.verify_live(&client, &token, &vault).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_account_is_not_found() {
        let (client, _) = client().await;
        let error = client
            .create_token("default", "nobody", &TokenRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code, 404);
        assert!(error.message.contains("nobody"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_bound_object_is_refused_naming_the_field() {
        let (client, _) = client().await;
        let error = client
            .create_token("default", "builder", &bound_to("Pod", "absent", None))
            .await
            .unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(cause_fields(&error), ["spec.boundObjectRef.name"]);

        pod(&client, "web", "builder").await;
        let error = client
            .create_token("default", "builder", &bound_to("Pod", "web", Some("other")))
            .await
            .unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(cause_fields(&error), ["spec.boundObjectRef.uid"]);

        let error = client
            .create_token("default", "builder", &bound_to("ConfigMap", "web", None))
            .await
            .unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(cause_fields(&error), ["spec.boundObjectRef.kind"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_of_another_account_is_refused() {
        let (client, _) = client().await;
        pod(&client, "web", "default").await;
        let error = client
            .create_token("default", "builder", &bound_to("Pod", "web", None))
            .await
            .unwrap_err();
        assert_eq!(error.code, 400);
        assert!(
            error.message.contains("different serviceaccount name"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_expiration_is_refused_naming_the_field() {
        let (client, _) = client().await;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(599),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let error = client
            .create_token("default", "builder", &request)
            .await
            .unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(cause_fields(&error), ["spec.expirationSeconds"]);
        assert!(error.message.contains("10 minutes"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_issuer_the_request_is_unavailable() {
        let client = Client::new(MemoryStore::new());
        client.bootstrap().await.unwrap();
        let mut account = ServiceAccount::default();
        account.metadata.name = Some("builder".into());
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let error = client
            .create_token("default", "builder", &TokenRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code, 503);
        assert!(error.message.contains("no token issuer"), "{error}");
        // Attached later, to every clone.
        let clone = client.clone();
        client.set_token_issuer(TokenIssuer::new(SigningKey::generate().unwrap()));
        assert!(
            clone
                .create_token("default", "builder", &TokenRequest::default())
                .await
                .is_ok()
        );
    }
}
