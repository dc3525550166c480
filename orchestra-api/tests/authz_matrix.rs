//! The authorization matrix: every verb on every built-in resource (and the subresources),
//! asked through the API server's router by callers who hold no grant for it — no token,
//! malformed tokens, an expired token, the token of a deleted pod, another namespace's service
//! account, a user without bindings, a node agent touching another node's pods and secrets —
//! must all be refused, each with a `401` or `403` `Status`. Beside them, the same requests made
//! with a pod's bound token are allowed exactly where the pod's bindings allow them, and a node
//! agent reaches its own pod and its secret.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use orchestra_api::ApiServer;
use orchestra_api::authn::{Authentication, Chain, ServiceAccountTokens, StaticTokens};
use orchestra_api::authz::Authorization;
use orchestra_api::authz::bootstrap::ensure_bootstrap_policy;
use orchestra_core::api::{Api, Client, DeleteParams, PostParams};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::token::{SigningKey, TokenIssuer};
use orchestra_core::rbac::{Attributes, rule_allows};
use orchestra_core::resource::ApiResource;
use orchestra_core::store::MemoryStore;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const STATIC_TOKENS: &str = "\
admin-token,admin,admin,\"system:masters\"
nobody-token,nobody,nobody
node-1-token,system:node:n1,n1,\"system:nodes\"
";

struct Cluster {
    router: Router,
    client: Client,
    issuer: TokenIssuer,
    authz: Authorization,
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

async fn cluster() -> Cluster {
    let issuer = TokenIssuer::new(SigningKey::generate().expect("a key"));
    let client = Client::builder(MemoryStore::new())
        .token_issuer(issuer.clone())
        .build();
    client.bootstrap().await.expect("bootstrap");
    ensure_bootstrap_policy(&client).await.expect("policy");
    let tokens = StaticTokens::parse(STATIC_TOKENS).expect("tokens");
    let authn = Chain::new()
        .with(tokens)
        .with(ServiceAccountTokens::new(issuer.verifier(), client.clone()));
    let authz = Authorization::new(client.clone());
    let router = ApiServer::builder(client.clone())
        .authentication(Authentication::new(Arc::new(authn)))
        .authorization(authz.clone())
        .build()
        .router();
    Cluster {
        router,
        client,
        issuer,
        authz,
    }
}

/// Namespaces `a` and `b`; accounts `a/worker`, `a/builder`, `b/other`; nodes `n1`, `n2`;
/// pods `a/on-n1` (worker, secret `s1`), `a/on-n2` (builder, secret `s2`), `a/doomed`;
/// `worker` may view `a`, `other` may edit `b`.
async fn populate(cluster: &Cluster) {
    let client = &cluster.client;
    let post = PostParams::default();
    for name in ["a", "b"] {
        Api::<Namespace>::all(client.clone())
            .create(&post, &object(json!({"metadata": {"name": name}})))
            .await
            .expect("namespace");
    }
    for (namespace, name) in [("a", "worker"), ("a", "builder"), ("b", "other")] {
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&post, &object(json!({"metadata": {"name": name}})))
            .await
            .expect("account");
    }
    for name in ["n1", "n2"] {
        Api::<Node>::all(client.clone())
            .create(&post, &object(json!({"metadata": {"name": name}})))
            .await
            .expect("node");
    }
    for name in ["s1", "s2", "unused"] {
        Api::<Secret>::namespaced(client.clone(), "a")
            .create(
                &post,
                &object(json!({"metadata": {"name": name}, "stringData": {"k": "v"}})),
            )
            .await
            .expect("secret");
    }
    for (name, node, account, secret) in [
        ("on-n1", "n1", "worker", "s1"),
        ("on-n2", "n2", "builder", "s2"),
        ("doomed", "n1", "worker", "s1"),
    ] {
        let pod = json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "serviceAccountName": account,
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]
                }]
            }
        });
        Api::<Pod>::namespaced(client.clone(), "a")
            .create(&post, &object(pod))
            .await
            .expect("pod");
    }
    for (namespace, name, account, role) in [
        ("a", "worker-view", "worker", "view"),
        ("b", "other-edit", "other", "edit"),
    ] {
        let binding = json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
        });
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .create(&post, &object(binding))
            .await
            .expect("binding");
    }
    // Wait until the authorizer has seen the bindings.
    let worker = Attributes::resource("system:serviceaccount:a:worker", "list", "", "pods")
        .with_groups(["system:serviceaccounts", "system:authenticated"])
        .in_namespace("a");
    until_allowed(cluster, &worker).await;
}

/// Waits until the authorizer allows `attributes` (its cache follows the store by watches).
async fn until_allowed(cluster: &Cluster, attributes: &Attributes) {
    for _ in 0..200 {
        if cluster
            .authz
            .authorize_attributes(attributes, None)
            .await
            .is_allowed()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the authorizer never allowed {attributes:?}");
}

/// A pod-bound token of `account` in `namespace` for pod `pod`, asked through the API.
async fn pod_token(cluster: &Cluster, namespace: &str, account: &str, pod: &str) -> String {
    let uid = Api::<Pod>::namespaced(cluster.client.clone(), namespace)
        .get(pod)
        .await
        .expect("pod")
        .metadata
        .uid
        .unwrap_or_default();
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid}
        }
    });
    let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
    let (status, answer) = call(
        &cluster.router,
        Some("admin-token"),
        Method::POST,
        &path,
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["status"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// One request: its status and (for refusals) its body.
async fn call(
    router: &Router,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let content_type = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", content_type);
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("an answer");
    let status = response.status();
    if status.is_success() && path.contains("watch") {
        return (status, Value::Null);
    }
    let bytes = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A request of the matrix.
#[derive(Clone, Debug)]
struct Probe {
    method: Method,
    path: String,
    body: Option<Value>,
    /// What the authorizer should see.
    attributes: Attributes,
}

/// Every verb on `resource` (in `namespace` when namespaced), on an object named `name`.
fn probes(resource: &ApiResource, namespace: &str, name: &str) -> Vec<Probe> {
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    let collection = if resource.namespaced {
        format!("{prefix}/namespaces/{namespace}/{}", resource.plural)
    } else {
        format!("{prefix}/{}", resource.plural)
    };
    let body = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name, "namespace": if resource.namespaced { Some(namespace) } else { None }}
    });
    VERBS
        .iter()
        .map(|verb| {
            let (method, path, body) = match *verb {
                "get" => (Method::GET, format!("{collection}/{name}"), None),
                "list" => (Method::GET, collection.clone(), None),
                "watch" => (Method::GET, format!("{collection}?watch=true"), None),
                "create" => (Method::POST, collection.clone(), Some(body.clone())),
                "update" => (
                    Method::PUT,
                    format!("{collection}/{name}"),
                    Some(body.clone()),
                ),
                "patch" => (
                    Method::PATCH,
                    format!("{collection}/{name}"),
                    Some(json!({"metadata": {"labels": {"x": "y"}}})),
                ),
                "delete" => (Method::DELETE, format!("{collection}/{name}"), None),
                _ => (Method::DELETE, collection.clone(), None),
            };
            let mut attributes =
                Attributes::resource("", *verb, &*resource.group, &*resource.plural);
            if resource.namespaced {
                attributes = attributes.in_namespace(namespace);
            }
            if matches!(*verb, "get" | "update" | "patch" | "delete") {
                attributes = attributes.named(name);
            }
            Probe {
                method,
                path,
                body,
                attributes,
            }
        })
        .collect()
}

/// Subresource requests, on the pod `on-n2` and friends.
fn subresource_probes(namespace: &str) -> Vec<Probe> {
    let pods = format!("/api/v1/namespaces/{namespace}/pods/on-n2");
    let sub = |verb: &str,
               method: Method,
               path: String,
               group: &str,
               resource: &str,
               name: &str,
               subresource: &str,
               body: Option<Value>| Probe {
        method,
        path,
        body,
        attributes: Attributes::resource("", verb, group, resource)
            .in_namespace(namespace)
            .named(name)
            .on_subresource(subresource),
    };
    vec![
        sub(
            "get",
            Method::GET,
            format!("{pods}/log"),
            "",
            "pods",
            "on-n2",
            "log",
            None,
        ),
        sub(
            "get",
            Method::GET,
            format!("{pods}/status"),
            "",
            "pods",
            "on-n2",
            "status",
            None,
        ),
        sub(
            "patch",
            Method::PATCH,
            format!("{pods}/status"),
            "",
            "pods",
            "on-n2",
            "status",
            Some(json!({"status": {"phase": "Failed"}})),
        ),
        sub(
            "create",
            Method::POST,
            format!("{pods}/eviction"),
            "",
            "pods",
            "on-n2",
            "eviction",
            Some(
                json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-n2"}}),
            ),
        ),
        sub(
            "create",
            Method::POST,
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/builder/token"),
            "",
            "serviceaccounts",
            "builder",
            "token",
            Some(
                json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "on-n2"}}}),
            ),
        ),
        sub(
            "get",
            Method::GET,
            format!("/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"),
            "apps",
            "deployments",
            "web",
            "scale",
            None,
        ),
    ]
}

/// Every probe of every built-in resource, in `namespace`.
fn matrix(client: &Client, namespace: &str) -> Vec<Probe> {
    let mut all: Vec<Probe> = client
        .scheme()
        .resources()
        .flat_map(|resource| probes(resource, namespace, "x"))
        .collect();
    all.extend(subresource_probes(namespace));
    all
}

/// Asserts that `token` gets exactly `expected` (401 or 403), as a `Status`, for every probe.
async fn refused_everywhere(
    cluster: &Cluster,
    who: &str,
    token: Option<&str>,
    expected: StatusCode,
    probes: &[Probe],
) {
    let mut allowed = Vec::new();
    for probe in probes {
        let (status, body) = call(
            &cluster.router,
            token,
            probe.method.clone(),
            &probe.path,
            probe.body.clone(),
        )
        .await;
        if status != expected {
            allowed.push(format!(
                "{} {} -> {status} {body}",
                probe.method, probe.path
            ));
            continue;
        }
        assert_eq!(
            body["kind"], "Status",
            "{who}: {} {}: {body}",
            probe.method, probe.path
        );
        assert_eq!(body["code"], expected.as_u16(), "{who}: {body}");
        assert_eq!(body["status"], "Failure", "{who}: {body}");
    }
    assert!(
        allowed.is_empty(),
        "{who}: {} of {} requests not refused with {expected}:\n{}",
        allowed.len(),
        probes.len(),
        allowed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_grant_are_refused_every_verb_on_every_resource() {
    let cluster = cluster().await;
    populate(&cluster).await;
    let in_a = matrix(&cluster.client, "a");
    assert!(in_a.len() >= 150, "{} probes", in_a.len());

    // 401: no token, malformed tokens, an expired token, the token of a deleted pod.
    let foreign = TokenIssuer::new(SigningKey::generate().expect("a key"));
    let worker: ServiceAccount = Api::namespaced(cluster.client.clone(), "a")
        .get("worker")
        .await
        .expect("worker");
    let forged = foreign
        .issue(&worker, &[], Duration::from_secs(3600), None)
        .expect("forged");
    let two_hours_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let expired = cluster
        .issuer
        .clone()
        .with_clock(Arc::new(TokioClock::starting_at(two_hours_ago)))
        .issue(&worker, &[], Duration::from_secs(3600), None)
        .expect("expired");
    let doomed = pod_token(&cluster, "a", "worker", "doomed").await;
    let (status, _) = call(
        &cluster.router,
        Some(&doomed),
        Method::GET,
        "/api/v1/namespaces/a/pods",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the pod's token works while the pod exists"
    );
    Api::<Pod>::namespaced(cluster.client.clone(), "a")
        .delete("doomed", &DeleteParams::immediately())
        .await
        .expect("delete");
    for (who, token) in [
        ("no token", None),
        ("garbage", Some("garbage")),
        ("three dots", Some("a.b.c")),
        ("another issuer's token", Some(forged.as_str())),
        ("an expired token", Some(expired.as_str())),
        ("a deleted pod's token", Some(doomed.as_str())),
    ] {
        refused_everywhere(&cluster, who, token, StatusCode::UNAUTHORIZED, &in_a).await;
    }

    // 403: a user with no bindings, everywhere; another namespace's account in `a` and at
    // the cluster scope (it may edit `b`, which is checked to work).
    refused_everywhere(
        &cluster,
        "nobody",
        Some("nobody-token"),
        StatusCode::FORBIDDEN,
        &in_a,
    )
    .await;
    let other = cluster
        .issuer
        .issue(
            &Api::<ServiceAccount>::namespaced(cluster.client.clone(), "b")
                .get("other")
                .await
                .expect("other"),
            &[],
            Duration::from_secs(3600),
            None,
        )
        .expect("token");
    refused_everywhere(
        &cluster,
        "b's account in a",
        Some(&other),
        StatusCode::FORBIDDEN,
        &in_a,
    )
    .await;
    let (status, body) = call(
        &cluster.router,
        Some(&other),
        Method::POST,
        "/api/v1/namespaces/b/configmaps",
        Some(json!({"metadata": {"name": "mine"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "b's account edits b: {body}");

    // 403: node n1 on n2's pod, its secret and account, n2's Node and Lease, and lists not
    // narrowed to n1.
    let node_probes: Vec<Probe> = [
        (Method::GET, "/api/v1/namespaces/a/pods/on-n2", None),
        (Method::PUT, "/api/v1/namespaces/a/pods/on-n2", Some(json!({"metadata": {"name": "on-n2"}}))),
        (Method::PATCH, "/api/v1/namespaces/a/pods/on-n2/status", Some(json!({"status": {"phase": "Failed"}}))),
        (Method::DELETE, "/api/v1/namespaces/a/pods/on-n2", None),
        (Method::POST, "/api/v1/namespaces/a/pods/on-n2/eviction", Some(json!({"metadata": {"name": "on-n2"}}))),
        (Method::POST, "/api/v1/namespaces/a/pods", Some(json!({"metadata": {"name": "mirror"}}))),
        (Method::GET, "/api/v1/namespaces/a/pods", None),
        (Method::GET, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2", None),
        (Method::GET, "/api/v1/pods?watch=true", None),
        (Method::GET, "/api/v1/namespaces/a/secrets/s2", None),
        (Method::GET, "/api/v1/namespaces/a/secrets/unused", None),
        (Method::GET, "/api/v1/namespaces/a/secrets", None),
        (Method::GET, "/api/v1/namespaces/a/serviceaccounts/builder", None),
        (Method::POST, "/api/v1/namespaces/a/serviceaccounts/builder/token", Some(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "on-n2"}}}))),
        (Method::POST, "/api/v1/namespaces/a/serviceaccounts/worker/token", Some(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "on-n2"}}}))),
        (Method::GET, "/api/v1/nodes/n2", None),
        (Method::PATCH, "/api/v1/nodes/n2/status", Some(json!({"status": {}}))),
        (Method::POST, "/api/v1/nodes", Some(json!({"metadata": {"name": "n2"}}))),
        (Method::GET, "/api/v1/nodes", None),
        (Method::GET, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2", None),
        (Method::POST, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", Some(json!({"metadata": {"name": "n2"}}))),
        (Method::DELETE, "/api/v1/namespaces/a/configmaps", None),
    ]
    .into_iter()
    .map(|(method, path, body)| Probe {
        method,
        path: path.to_owned(),
        body,
        attributes: Attributes::default(),
    })
    .collect();
    refused_everywhere(
        &cluster,
        "node n1",
        Some("node-1-token"),
        StatusCode::FORBIDDEN,
        &node_probes,
    )
    .await;
    // NodeRestriction on its own Node: no restricted labels, no taint changes; other labels are
    // its business.
    for (patch, expected) in [
        (
            json!({"metadata": {"labels": {"node-restriction.kubernetes.io/trusted": "yes"}}}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"metadata": {"labels": {"example.com/zone": "a"}}}),
            StatusCode::OK,
        ),
        (
            json!({"status": {"capacity": {"pods": "110"}}}),
            StatusCode::OK,
        ),
    ] {
        let path = if patch.get("status").is_some() {
            "/api/v1/nodes/n1/status"
        } else {
            "/api/v1/nodes/n1"
        };
        let (status, answer) = call_with(
            &cluster.router,
            "node-1-token",
            Method::PATCH,
            path,
            &[("content-type", "application/merge-patch+json")],
            Some(patch.clone()),
        )
        .await;
        assert_eq!(
            status, expected,
            "node n1 patching its Node with {patch}: {answer}"
        );
    }

    // ... while its own pod, secret, Node and account tokens work.
    for (method, path, body, expected) in [
        (
            Method::GET,
            "/api/v1/namespaces/a/pods/on-n1",
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/a/secrets/s1",
            None,
            StatusCode::OK,
        ),
        (Method::GET, "/api/v1/nodes/n1", None, StatusCode::OK),
        (
            Method::POST,
            "/api/v1/namespaces/a/serviceaccounts/worker/token",
            Some(
                json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "on-n1"}}}),
            ),
            StatusCode::CREATED,
        ),
    ] {
        let (status, answer) = call(
            &cluster.router,
            Some("node-1-token"),
            method.clone(),
            path,
            body,
        )
        .await;
        assert_eq!(status, expected, "node n1: {method} {path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_token_works_for_exactly_its_bindings() {
    let cluster = cluster().await;
    populate(&cluster).await;
    let token = pod_token(&cluster, "a", "worker", "on-n1").await;
    // What `view` (the worker's binding in `a`) allows, by the bootstrap policy's rules.
    let (roles, bindings) = orchestra_core::rbac::bootstrap_policy();
    let policy = orchestra_core::rbac::Authorizer::new(&[], &roles, &[], &bindings);
    let view = policy.cluster_role_rules("view").expect("view").to_vec();
    let discovery = policy
        .cluster_role_rules("system:discovery")
        .expect("discovery")
        .to_vec();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for namespace in ["a", "b"] {
        for probe in matrix(&cluster.client, namespace) {
            let expected = namespace == "a"
                && probe.attributes.namespace() == Some("a")
                && view
                    .iter()
                    .chain(&discovery)
                    .any(|rule| rule_allows(&probe.attributes, rule));
            let (status, body) = call(
                &cluster.router,
                Some(&token),
                probe.method.clone(),
                &probe.path,
                probe.body.clone(),
            )
            .await;
            let allowed = status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED;
            if allowed != expected {
                wrong.push(format!(
                    "{} {} -> {status} (expected allowed={expected}) {body}",
                    probe.method, probe.path
                ));
            }
            if !allowed {
                assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
                assert_eq!(body["kind"], "Status");
            }
            checked += 1;
        }
    }
    assert!(checked >= 300, "{checked} requests");
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A request with extra headers: its status and body.
async fn call_with(
    router: &Router,
    token: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if !headers.iter().any(|(name, _)| *name == "content-type") {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let response = router
        .clone()
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("an answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_reviews_and_escalation_follow_the_bindings() {
    let cluster = cluster().await;
    populate(&cluster).await;
    let router = &cluster.router;
    let worker = "system:serviceaccount:a:worker";

    // Impersonation needs the `impersonate` verb; with it, the request runs as the other user.
    let (status, body) = call_with(
        router,
        "nobody-token",
        Method::GET,
        "/api/v1/namespaces/a/pods",
        &[("impersonate-user", "admin")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"cannot impersonate resource "users""#),
        "{body}"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::GET,
        "/api/v1/namespaces/a/pods",
        &[("impersonate-group", "system:masters")],
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "groups without a user: {body}"
    );
    let (status, _) = call_with(
        router,
        "admin-token",
        Method::GET,
        "/api/v1/namespaces/a/pods",
        &[("impersonate-user", worker)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::GET,
        "/api/v1/namespaces/b/pods",
        &[("impersonate-user", worker)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(worker),
        "{body}"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &[("impersonate-user", worker)],
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["userInfo"]["username"], worker);
    let groups = body["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:serviceaccounts:a") && groups.contains("system:authenticated"),
        "{groups}"
    );

    // SubjectAccessReview (admin asks about the worker) and SelfSubjectRulesReview.
    let review = |namespace: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": worker,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:a", "system:authenticated"],
                "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "pods"}
            }
        })
    };
    for (namespace, allowed) in [("a", true), ("b", false)] {
        let (status, body) = call_with(
            router,
            "admin-token",
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            &[],
            Some(review(namespace)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"]["allowed"], allowed, "{namespace}: {body}");
    }
    let (status, _) = call_with(
        router,
        "nobody-token",
        Method::POST,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        &[],
        Some(review("a")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "reviews of others need a grant"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        &[],
        Some(json!({"spec": {"user": "x"}})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no attributes: {body}"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        &[("impersonate-user", worker)],
        Some(json!({"spec": {"namespace": "a"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rules = body["status"]["resourceRules"].to_string();
    assert!(
        rules.contains("\"pods\"") && !rules.contains("\"secrets\""),
        "{rules}"
    );

    // TokenReview: who a token is, for those allowed to ask (system:auth-delegator's grant).
    let token = pod_token(&cluster, "a", "worker", "on-n1").await;
    let reviews = "/apis/authentication.k8s.io/v1/tokenreviews";
    let review = |token: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        reviews,
        &[],
        Some(review(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["authenticated"], true, "{body}");
    assert_eq!(body["status"]["user"]["username"], worker);
    assert!(
        body["status"]["user"]["extra"]
            .to_string()
            .contains("on-n1"),
        "the bound pod: {body}"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        reviews,
        &[],
        Some(review("garbage")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["authenticated"], false, "{body}");
    let (status, _) = call_with(
        router,
        "nobody-token",
        Method::POST,
        reviews,
        &[],
        Some(review(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "token reviews need a grant");

    // Service-account issuer discovery, for service accounts: the issuer and its key.
    let (status, body) = call_with(
        router,
        &token,
        Method::GET,
        "/.well-known/openid-configuration",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issuer"], cluster.issuer.issuer());
    let (status, body) = call_with(router, &token, Method::GET, "/openid/v1/jwks", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["keys"][0]["kid"], cluster.issuer.key().key_id());
    assert_eq!(body["keys"][0]["alg"], "ES256");
    let (status, _) = call_with(
        router,
        "nobody-token",
        Method::GET,
        "/openid/v1/jwks",
        &[],
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the keys are for service accounts"
    );

    // Escalation: jane administers `a`; she may bind `view` and write roles she holds, not
    // bind `cluster-admin` nor write a role with more than she holds.
    let jane = [("impersonate-user", "jane")];
    let (status, body) = call_with(router, "admin-token", Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings", &[], Some(json!({
        "metadata": {"name": "jane-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]
    }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jane_attributes = Attributes::resource(
        "jane",
        "create",
        "rbac.authorization.k8s.io",
        "rolebindings",
    )
    .in_namespace("a");
    until_allowed(&cluster, &jane_attributes).await;
    let binding = |name: &str, role: &str| {
        json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team"}]
        })
    };
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings";
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        bindings,
        &jane,
        Some(binding("team-root", "cluster-admin")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not currently held"),
        "{body}"
    );
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        bindings,
        &jane,
        Some(binding("team-view", "view")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles";
    let role = |name: &str, verbs: Value| {
        json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]
        })
    };
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        roles,
        &jane,
        Some(role("secrets-all", json!(["*"]))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::POST,
        roles,
        &jane,
        Some(role("secrets-read", json!(["get", "list"]))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A patch that would widen the role is refused too.
    let (status, body) = call_with(
        router,
        "admin-token",
        Method::PATCH,
        &format!("{roles}/secrets-read"),
        &[
            ("impersonate-user", "jane"),
            ("content-type", "application/merge-patch+json"),
        ],
        Some(json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
