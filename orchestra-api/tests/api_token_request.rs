//! `serviceaccounts/token` through the HTTP API: a remote client's `create_token` carried by
//! `HttpTransport` to the API server, which answers with its in-process client's.

use orchestra_api::ApiServer;
use orchestra_api::remote::RemoteConfig;
use orchestra_api::tls::serve_plain;
use orchestra_core::api::{Api, Client, PostParams};
use orchestra_core::controllers::token::{POD_NAME_EXTRA, SigningKey, TokenIssuer};
use orchestra_core::k8s::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec,
};
use orchestra_core::k8s::api::core::v1::{Pod, ServiceAccount};
use orchestra_core::store::MemoryStore;

/// A remote client of an API server over a fresh store whose client signs with `issuer`.
async fn remote(issuer: &TokenIssuer) -> Client {
    let local = Client::builder(MemoryStore::new())
        .token_issuer(issuer.clone())
        .build();
    local.bootstrap().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = ApiServer::new(local).router();
    tokio::spawn(serve_plain(listener, router, std::future::pending()));
    RemoteConfig {
        server: format!("http://{address}"),
        ca_pem: None,
        token: None,
    }
    .client()
    .unwrap()
}

#[tokio::test]
async fn a_remote_client_gets_a_pod_bound_token() {
    let issuer = TokenIssuer::new(SigningKey::generate().unwrap());
    let client = remote(&issuer).await;
    let mut account = ServiceAccount::default();
    account.metadata.name = Some("builder".into());
    Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"serviceAccountName": "builder",
                 "containers": [{"name": "web", "image": "web:1"}]},
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3607),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("web".into()),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = client
        .create_token("default", "builder", &request)
        .await
        .unwrap();
    assert_eq!(answer.spec.expiration_seconds, Some(3607));
    let status = answer.status.unwrap();
    let identity = issuer.verifier().verify(&status.token, &[]).unwrap();
    assert_eq!(identity.username(), "system:serviceaccount:default:builder");
    assert_eq!(
        identity.extra().get(POD_NAME_EXTRA),
        Some(&vec!["web".to_owned()])
    );

    // Failures keep their Status across the wire.
    let missing = client
        .create_token("default", "nobody", &TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code, 404);
    let mut short = TokenRequest::default();
    short.spec.expiration_seconds = Some(60);
    let invalid = client
        .create_token("default", "builder", &short)
        .await
        .unwrap_err();
    assert_eq!(invalid.code, 422);
    assert!(
        invalid.message.contains("spec.expirationSeconds"),
        "{invalid}"
    );
}
