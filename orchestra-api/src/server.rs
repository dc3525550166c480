//! The API server: Kubernetes' REST API over a [`Client`].
//!
//! Every resource request goes through the same [`Client`] an embedding program uses in-process,
//! so defaulting, validation, admission, optimistic concurrency and watch semantics are those of
//! the in-process API: this module only translates HTTP into calls and answers into HTTP.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions;
use orchestra_core::api::{
    Client, DeleteParams, Deletion, ListParams, PatchParams, PostParams, Subresource, WatchEvent,
};
use orchestra_core::manifest;
use orchestra_core::patch::{MergeKeys, PatchType, apply_patch};
use orchestra_core::resource::{ApiResource, DynamicObject};
use orchestra_core::status::{StatusError, StatusReason};
use serde_json::{Value, json};

use crate::audit::AuditLog;
use crate::authn::Authentication;
use crate::authz::Authorization;
use crate::discovery::{AGGREGATED_CONTENT_TYPE, Discovery, wants_aggregated};
use crate::logs::{LogRequest, PodLogs, container_of};
use crate::openapi::OpenApi;
use crate::request::{FieldValidation, Query, Target, not_served, parse_propagation};
use crate::response::{Outcome, json_bytes, respond, success};
use crate::table::{IncludeObject, table};
use crate::watch::watch_response;

/// The largest request body the server reads (Kubernetes' limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The Kubernetes version the server reports (`/version`), the one whose API it serves.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

/// The HTTP API server of an Orchestra control plane; see the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct ApiServer {
    state: Arc<ServerState>,
    authentication: Option<Authentication>,
    authorization: Option<Authorization>,
    audit: Option<AuditLog>,
}

#[derive(Debug)]
struct ServerState {
    client: Client,
    discovery: Discovery,
    openapi: OpenApi,
    logs: Option<Arc<dyn PodLogs>>,
    version: Vec<u8>,
}

impl ApiServer {
    /// A server of `client`'s kinds.
    pub fn new(client: Client) -> ApiServer {
        ApiServer::builder(client).build()
    }

    /// A server to configure.
    pub fn builder(client: Client) -> ApiServerBuilder {
        ApiServerBuilder {
            client,
            logs: None,
            authentication: None,
            authorization: None,
            audit: None,
        }
    }

    /// The client the server serves.
    pub fn client(&self) -> &Client {
        &self.state.client
    }

    /// The routes of the server, to serve with [`crate::tls::serve_tls`] (or any hyper server),
    /// or to nest in a larger router.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .fallback(dispatch)
            .with_state(self.state.clone());
        // Layers wrap what is already there: the last added runs first.
        if let Some(authorization) = &self.authorization {
            router = router.layer(axum::middleware::from_fn_with_state(
                authorization.clone(),
                crate::authz::authorize,
            ));
        }
        if let Some(authentication) = &self.authentication {
            router = router.layer(axum::middleware::from_fn_with_state(
                authentication.clone(),
                crate::authn::authenticate,
            ));
        }
        if let Some(audit) = &self.audit {
            router = router.layer(axum::middleware::from_fn_with_state(
                audit.clone(),
                crate::audit::audit,
            ));
        }
        router
    }
}

/// Configures an [`ApiServer`].
#[derive(Debug)]
pub struct ApiServerBuilder {
    client: Client,
    logs: Option<Arc<dyn PodLogs>>,
    authentication: Option<Authentication>,
    authorization: Option<Authorization>,
    audit: Option<AuditLog>,
}

impl ApiServerBuilder {
    /// Where `pods/log` reads logs from (without one, log requests fail with 503).
    #[must_use]
    pub fn logs(mut self, logs: Arc<dyn PodLogs>) -> ApiServerBuilder {
        self.logs = Some(logs);
        self
    }

    /// Who may call the server: every request is authenticated ([`crate::authn`]) before it is
    /// served. Without it, the server serves everyone (for tests and in-process use only).
    #[must_use]
    pub fn authentication(mut self, authentication: Authentication) -> ApiServerBuilder {
        self.authentication = Some(authentication);
        self
    }

    /// What callers may do: every request is authorized ([`crate::authz`]) after it is
    /// authenticated. Without it, every authenticated caller may do anything.
    #[must_use]
    pub fn authorization(mut self, authorization: Authorization) -> ApiServerBuilder {
        self.authorization = Some(authorization);
        self
    }

    /// Writes a line per request to this audit log ([`crate::audit`]).
    #[must_use]
    pub fn audit(mut self, audit: AuditLog) -> ApiServerBuilder {
        self.audit = Some(audit);
        self
    }

    /// The server.
    pub fn build(self) -> ApiServer {
        let scheme = self.client.scheme();
        let discovery = Discovery::new(scheme);
        let openapi = OpenApi::new(scheme);
        let (major, minor) = KUBERNETES_VERSION;
        let version = json!({
            "major": major,
            "minor": minor,
            "gitVersion": format!("v{major}.{minor}.0-orchestra.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        });
        // TokenReviews are answered by the authorization layer with the server's authenticator.
        let authorization = match (self.authorization, &self.authentication) {
            (Some(authorization), Some(authentication)) => {
                Some(authorization.with_authentication(authentication.clone()))
            }
            (authorization, _) => authorization,
        };
        ApiServer {
            authentication: self.authentication,
            authorization,
            audit: self.audit,
            state: Arc::new(ServerState {
                client: self.client,
                discovery,
                openapi,
                logs: self.logs,
                version: serde_json::to_vec(&version).unwrap_or_default(),
            }),
        }
    }
}

/// The machine's architecture as Go names it (what clients expect in `platform`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// Decodes a request body as its `Content-Type` says: JSON (the default), YAML (also the apply
/// patches of server-side apply) or Kubernetes' protobuf.
///
/// # Errors
///
/// `400 Bad Request` naming what is wrong with the body.
pub fn decode_request_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, StatusError> {
    let media = content_type(headers);
    let media = media.split(';').next().unwrap_or_default().trim();
    match media {
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| bad_request("the request body is not UTF-8"))?;
            let mut documents = manifest::parse_all(text).map_err(|error| {
                bad_request(format!("the request body is not valid YAML: {error}"))
            })?;
            match documents.len() {
                1 => Ok(documents.remove(0).value),
                0 => Err(bad_request("the request body is empty")),
                _ => Err(bad_request(
                    "the request body holds more than one YAML document",
                )),
            }
        }
        crate::protobuf::PROTOBUF => crate::protobuf::decode(body)
            .map_err(|error| bad_request(format!("the protobuf body cannot be read: {error}"))),
        _ => serde_json::from_slice(body)
            .map_err(|error| bad_request(format!("the request body is not valid JSON: {error}"))),
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
}

/// Whether the client asks for the `Table` format (`kubectl get`).
fn wants_table(accept: &str) -> bool {
    crate::table::accepts_table(accept)
        || accept.split(',').next().is_some_and(|first| {
            first.split(';').any(|p| p.trim() == "as=Table") && first.contains("g=meta.k8s.io")
        })
}

fn text(code: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn dispatch(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = Query::parse(parts.uri.query());
    let outcome = route(&state, &parts.method, &path, &query, &parts.headers, body).await;
    respond(outcome)
}

/// Service-account issuer discovery (Kubernetes' `/.well-known/openid-configuration`): the
/// issuer of the service-account tokens and where its keys are, so that other systems (cloud
/// identity federation, other clusters) can verify the tokens of this cluster's pods.
fn openid_configuration(state: &ServerState) -> Outcome {
    let issuer = state.client.token_issuer().ok_or_else(not_served)?;
    let issuer = issuer.issuer().trim_end_matches('/').to_owned();
    Ok(crate::response::json(
        StatusCode::OK,
        &json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }),
    ))
}

/// The public keys of the service-account token issuer, as a JSON Web Key Set
/// (`/openid/v1/jwks`).
fn openid_keys(state: &ServerState) -> Outcome {
    let issuer = state.client.token_issuer().ok_or_else(not_served)?;
    let key = issuer.key().verifying_key().jwk();
    let mut response = crate::response::json(StatusCode::OK, &json!({"keys": [key]}));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(response)
}

async fn route(
    state: &Arc<ServerState>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Outcome {
    let trimmed = path.trim_end_matches('/');
    if *method == Method::GET {
        match trimmed {
            "/version" => return Ok(json_bytes(StatusCode::OK, state.version.clone())),
            "/healthz" | "/livez" => return Ok(text(StatusCode::OK, "ok")),
            "/readyz" => return readyz(state).await,
            "/api" => {
                return Ok(discovery(
                    state.discovery.core(wants_aggregated(accept(headers))),
                    wants_aggregated(accept(headers)),
                ));
            }
            "/apis" => {
                return Ok(discovery(
                    state.discovery.groups(wants_aggregated(accept(headers))),
                    wants_aggregated(accept(headers)),
                ));
            }
            "/openapi/v3" => return Ok(json_bytes(StatusCode::OK, state.openapi.index().to_vec())),
            "/openapi/v2" => return openapi_v2(state, headers),
            "/.well-known/openid-configuration" => return openid_configuration(state),
            "/openid/v1/jwks" => return openid_keys(state),
            _ => {}
        }
        if let Some(document) = trimmed.strip_prefix("/openapi/v3/") {
            return match state.openapi.document(document) {
                Some(bytes) => Ok(json_bytes(StatusCode::OK, bytes.to_vec())),
                None => Err(not_served()),
            };
        }
        let relative = trimmed.trim_start_matches('/');
        if let Some(list) = state.discovery.resource_list(relative) {
            return Ok(json_bytes(StatusCode::OK, list.to_vec()));
        }
        if let Some(group) = relative.strip_prefix("apis/")
            && let Some(document) = state.discovery.group(group)
        {
            return Ok(json_bytes(StatusCode::OK, document.to_vec()));
        }
    }
    let Some(target) = Target::parse(state.client.scheme(), trimmed) else {
        return Err(not_served());
    };
    let handler = Handler {
        state,
        target: &target,
        query,
        headers,
    };
    handler.handle(method, body).await
}

/// `GET /openapi/v2`: the Swagger 2.0 document as JSON. kubectl asks for it only as protobuf
/// (and uses v3 when it can): a client that takes no JSON gets 406, as Kubernetes answers a media
/// type it cannot produce.
fn openapi_v2(state: &ServerState, headers: &HeaderMap) -> Outcome {
    let accept = accept(headers);
    let takes_json = accept.is_empty()
        || accept.split(',').any(|media| {
            let media = media.split(';').next().unwrap_or_default().trim();
            matches!(media, "application/json" | "*/*" | "application/*")
        });
    if !takes_json {
        return Err(StatusError::new(
            StatusReason::NotAcceptable,
            format!("only application/json is served for the OpenAPI v2 document, not {accept:?}"),
        ));
    }
    Ok(json_bytes(StatusCode::OK, state.openapi.v2().to_vec()))
}

fn discovery(body: &[u8], aggregated: bool) -> Response {
    let mut response = json_bytes(StatusCode::OK, body.to_vec());
    if aggregated {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(AGGREGATED_CONTENT_TYPE),
        );
    }
    response
}

async fn readyz(state: &ServerState) -> Outcome {
    let namespaces = ApiResource::new("", "v1", "Namespace", Some("namespaces"), false);
    match state.client.get(&namespaces, None, "default").await {
        Ok(_) => Ok(text(StatusCode::OK, "ok")),
        Err(error) if error.is_not_found() => Ok(text(StatusCode::OK, "ok")),
        Err(error) => Err(StatusError::new(
            StatusReason::ServiceUnavailable,
            format!("the store is not ready: {error}"),
        )),
    }
}

fn bad_request(message: impl Into<String>) -> StatusError {
    StatusError::new(StatusReason::BadRequest, message)
}

fn method_not_allowed(method: &Method, target: &Target) -> StatusError {
    StatusError::new(
        StatusReason::MethodNotAllowed,
        format!(
            "the server does not allow this method on the requested resource ({method} {}{})",
            target.resource.plural,
            target
                .subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ),
    )
}

/// One resource request being served.
struct Handler<'a> {
    state: &'a ServerState,
    target: &'a Target,
    query: &'a Query,
    headers: &'a HeaderMap,
}

impl Handler<'_> {
    fn client(&self) -> &Client {
        &self.state.client
    }

    fn resource(&self) -> &ApiResource {
        &self.target.resource
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    async fn handle(&self, method: &Method, body: Body) -> Outcome {
        let target = self.target;
        match (&target.name, target.subresource.as_deref()) {
            (None, _) => match *method {
                Method::GET if self.query.flag("watch")? => self.watch().await,
                Method::GET => self.list().await,
                Method::POST => self.create(read_body(body).await?).await,
                Method::DELETE => self.delete_collection(read_body(body).await?).await,
                _ => Err(method_not_allowed(method, target)),
            },
            (Some(name), None | Some("status")) => {
                let subresource = if target.subresource.is_some() {
                    Subresource::Status
                } else {
                    Subresource::Main
                };
                match *method {
                    Method::GET => self.get(name).await,
                    Method::PUT => {
                        self.replace(name, read_body(body).await?, subresource)
                            .await
                    }
                    Method::PATCH => self.patch(name, read_body(body).await?, subresource).await,
                    Method::DELETE if subresource == Subresource::Main => {
                        self.delete(name, read_body(body).await?).await
                    }
                    _ => Err(method_not_allowed(method, target)),
                }
            }
            (Some(name), Some("scale")) => match *method {
                Method::GET => self.get_scale(name).await,
                Method::PUT => self.replace_scale(name, read_body(body).await?).await,
                Method::PATCH => self.patch_scale(name, read_body(body).await?).await,
                _ => Err(method_not_allowed(method, target)),
            },
            (Some(name), Some(sub)) if self.is_pods() => match (method, sub) {
                (&Method::GET, "log") => self.logs(name).await,
                (&Method::POST, "binding") => self.bind(name, read_body(body).await?).await,
                (&Method::POST, "eviction") => self.evict(name, read_body(body).await?).await,
                _ => Err(method_not_allowed(method, target)),
            },
            (Some(name), Some("token")) if self.is_service_accounts() => match *method {
                Method::POST => self.create_token(name, read_body(body).await?).await,
                _ => Err(method_not_allowed(method, target)),
            },
            _ => Err(not_served()),
        }
    }

    fn is_service_accounts(&self) -> bool {
        self.resource().group.is_empty() && self.resource().plural == "serviceaccounts"
    }

    /// `POST serviceaccounts/<name>/token`: a bound token (Kubernetes' TokenRequest API).
    async fn create_token(&self, name: &str, body: Bytes) -> Outcome {
        let mut request = self.decode_object(&body)?;
        // What a client sends as status (kubectl: an empty one) is not read, as in Kubernetes.
        if let Some(object) = request.as_object_mut() {
            object.remove("status");
        }
        let request: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(request).map_err(|error| {
                bad_request(format!("the TokenRequest cannot be read: {error}"))
            })?;
        let namespace = self.namespace().unwrap_or_default();
        let answer = self
            .client()
            .create_token(namespace, name, &request)
            .await?;
        Ok(crate::response::json(StatusCode::CREATED, &answer))
    }

    fn is_pods(&self) -> bool {
        self.resource().group.is_empty() && self.resource().plural == "pods"
    }

    /// Decodes a body as JSON, or YAML when its `Content-Type` says so.
    fn decode_body(&self, body: &[u8]) -> Result<Value, StatusError> {
        decode_request_body(self.headers, body)
    }

    fn decode_object(&self, body: &[u8]) -> Result<Value, StatusError> {
        let value = self.decode_body(body)?;
        if !value.is_object() {
            return Err(bad_request("the request body must be a JSON object"));
        }
        Ok(value)
    }

    fn post_params(&self) -> Result<PostParams, StatusError> {
        Ok(PostParams {
            dry_run: self.query.dry_run()?,
            field_manager: self.query.field_manager()?,
        })
    }

    /// Runs a write, and under `fieldValidation=Warn|Ignore` retries it without the unknown
    /// fields the strict decoding found, with a `Warning` header for each under `Warn`.
    async fn with_field_validation<F, Fut>(
        &self,
        mut value: Value,
        write: F,
    ) -> Result<(DynamicObject, Vec<String>), StatusError>
    where
        F: Fn(Value) -> Fut,
        Fut: Future<Output = Result<DynamicObject, StatusError>>,
    {
        let validation = self.query.field_validation()?;
        let mut warnings = Vec::new();
        loop {
            match write(value.clone()).await {
                Ok(object) => return Ok((object, warnings)),
                Err(error) if validation != FieldValidation::Strict => {
                    let unknown = unknown_fields(&error);
                    if unknown.is_empty() || warnings.len() > 64 {
                        return Err(error);
                    }
                    for field in unknown {
                        if !remove_field(&mut value, &field) {
                            return Err(error);
                        }
                        if validation == FieldValidation::Warn {
                            warnings.push(format!("unknown field \"{field}\""));
                        }
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn object_response(
        &self,
        code: StatusCode,
        object: &DynamicObject,
        warnings: &[String],
    ) -> Outcome {
        let mut response = if wants_table(accept(self.headers)) {
            let value = to_value(object)?;
            let now = self.client().clock().now();
            let include = IncludeObject::from_query(self.query.get("includeObject"));
            crate::response::json(
                code,
                &table(
                    self.resource(),
                    std::slice::from_ref(&value),
                    json!({}),
                    include,
                    now,
                ),
            )
        } else {
            crate::response::json(code, object)
        };
        for warning in warnings {
            if let Ok(value) =
                HeaderValue::from_str(&format!("299 - \"{}\"", warning.replace('"', "'")))
            {
                response.headers_mut().append(header::WARNING, value);
            }
        }
        Ok(response)
    }

    async fn get(&self, name: &str) -> Outcome {
        let object = self
            .client()
            .get(self.resource(), self.namespace(), name)
            .await?;
        self.object_response(StatusCode::OK, &object, &[])
    }

    async fn list(&self) -> Outcome {
        let params = self.query.list_params()?;
        let list = self
            .client()
            .list(self.resource(), self.namespace(), &params)
            .await?;
        let resource = self.resource();
        if wants_table(accept(self.headers)) {
            let objects = list
                .items
                .iter()
                .map(to_value)
                .collect::<Result<Vec<Value>, StatusError>>()?;
            let metadata = serde_json::to_value(&list.metadata).unwrap_or_default();
            let now = self.client().clock().now();
            let include = IncludeObject::from_query(self.query.get("includeObject"));
            return Ok(crate::response::json(
                StatusCode::OK,
                &table(resource, &objects, metadata, include, now),
            ));
        }
        // Serialised straight from the objects (a `json!` here would first copy every object
        // into a `Value`).
        Ok(crate::response::json(
            StatusCode::OK,
            &ListBody {
                kind: format!("{}List", resource.kind),
                api_version: &resource.api_version,
                metadata: &list.metadata,
                items: &list.items,
            },
        ))
    }

    async fn watch(&self) -> Outcome {
        let (params, mut version) = self.query.watch_params()?;
        let timeout = params.timeout;
        // `sendInitialEvents` (the watch-list of client-go and kube-rs): the current objects as
        // ADDED events, a bookmark marking their end, then the changes after them.
        let mut initial = Vec::new();
        if self.query.flag("sendInitialEvents")? {
            if !params.bookmarks {
                return Err(StatusError::new(
                    StatusReason::Invalid,
                    "allowWatchBookmarks: Required value: allowWatchBookmarks must be true when sendInitialEvents is set",
                ));
            }
            if self.query.get("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(StatusError::new(
                    StatusReason::Invalid,
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            let mut list_params = ListParams {
                label_selector: params.label_selector.clone(),
                field_selector: params.field_selector.clone(),
                ..ListParams::default()
            };
            loop {
                let page = self
                    .client()
                    .list(
                        self.resource(),
                        self.namespace(),
                        &list_params.clone().limit(500),
                    )
                    .await?;
                if list_params.continue_token.is_none() {
                    version = page.resource_version().unwrap_or_default().to_owned();
                }
                let next = page.continue_token().map(str::to_owned);
                initial.extend(page.items.into_iter().map(WatchEvent::Added));
                match next {
                    Some(token) => list_params.continue_token = Some(token),
                    None => break,
                }
            }
            initial.push(WatchEvent::Bookmark(version.clone()));
        }
        let events = self
            .client()
            .watch(self.resource(), self.namespace(), &params, &version)
            .await?;
        let render = wants_table(accept(self.headers)).then(|| {
            let resource = self.resource().clone();
            let clock = self.client().clock().clone();
            let include = IncludeObject::from_query(self.query.get("includeObject"));
            let render: crate::watch::Render = Box::new(move |object: &DynamicObject| {
                let value = serde_json::to_value(object).unwrap_or(Value::Null);
                table(
                    &resource,
                    std::slice::from_ref(&value),
                    json!({}),
                    include,
                    clock.now(),
                )
            });
            render
        });
        Ok(watch_response(
            self.resource(),
            events,
            timeout,
            render,
            initial,
        ))
    }

    async fn create(&self, body: Bytes) -> Outcome {
        let value = self.decode_object(&body)?;
        let params = self.post_params()?;
        let client = self.client();
        let resource = self.resource();
        let namespace = self.namespace();
        let (created, warnings) = self
            .with_field_validation(value, |value| {
                let params = &params;
                async move {
                    let object = dynamic(value)?;
                    client.create(resource, namespace, object, params).await
                }
            })
            .await?;
        self.object_response(StatusCode::CREATED, &created, &warnings)
    }

    async fn replace(&self, name: &str, body: Bytes, subresource: Subresource) -> Outcome {
        let value = self.decode_object(&body)?;
        let params = self.post_params()?;
        let client = self.client();
        let resource = self.resource();
        let namespace = self.namespace();
        let (replaced, warnings) = self
            .with_field_validation(value, |value| {
                let params = &params;
                async move {
                    let object = dynamic(value)?;
                    if let Some(given) = object.metadata.name.as_deref()
                        && given != name
                    {
                        return Err(bad_request(format!(
                            "the name of the object ({given}) does not match the name on the URL ({name})"
                        )));
                    }
                    client
                        .replace(resource, namespace, name, object, params, subresource)
                        .await
                }
            })
            .await?;
        self.object_response(StatusCode::OK, &replaced, &warnings)
    }

    fn patch_params(&self) -> Result<PatchParams, StatusError> {
        let patch_type =
            PatchType::from_content_type(content_type(self.headers)).map_err(|error| {
                StatusError::new(StatusReason::UnsupportedMediaType, error.to_string())
            })?;
        let mut params = PatchParams::new(patch_type);
        params.dry_run = self.query.dry_run()?;
        params.field_manager = self.query.field_manager()?;
        params.force = self.query.flag("force")?;
        if params.force && patch_type != PatchType::Apply {
            return Err(bad_request(
                "force: Invalid value: true: may not be specified for non-apply patch",
            ));
        }
        Ok(params)
    }

    async fn patch(&self, name: &str, body: Bytes, subresource: Subresource) -> Outcome {
        let params = self.patch_params()?;
        let patch = self.decode_body(&body)?;
        let client = self.client();
        let resource = self.resource();
        let namespace = self.namespace();
        let (patched, warnings) = self
            .with_field_validation(patch, |patch| {
                let params = &params;
                async move {
                    client
                        .patch(resource, namespace, name, &patch, params, subresource)
                        .await
                }
            })
            .await?;
        self.object_response(StatusCode::OK, &patched, &warnings)
    }

    fn delete_params(&self, body: &[u8]) -> Result<DeleteParams, StatusError> {
        let mut params = DeleteParams {
            dry_run: self.query.dry_run()?,
            grace_period_seconds: self.query.integer("gracePeriodSeconds")?,
            preconditions: None,
            propagation_policy: self.query.propagation_policy()?,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(params);
        }
        let options = self.decode_body(body)?;
        delete_options(&mut params, &options)?;
        Ok(params)
    }

    async fn delete(&self, name: &str, body: Bytes) -> Outcome {
        let params = self.delete_params(&body)?;
        let deletion = self
            .client()
            .delete(self.resource(), self.namespace(), name, &params)
            .await?;
        match deletion {
            Deletion::InProgress(object) => self.object_response(StatusCode::OK, &object, &[]),
            Deletion::Deleted(object) => Ok(success(
                StatusCode::OK,
                json!({
                    "name": name,
                    "group": self.resource().group,
                    "kind": self.resource().plural,
                    "uid": object.metadata.uid,
                }),
            )),
        }
    }

    async fn delete_collection(&self, body: Bytes) -> Outcome {
        let params = self.delete_params(&body)?;
        let mut list_params = ListParams {
            label_selector: self.query.get("labelSelector").map(str::to_owned),
            field_selector: self.query.get("fieldSelector").map(str::to_owned),
            ..ListParams::default()
        };
        let mut deleted = Vec::new();
        loop {
            let page = self
                .client()
                .list(
                    self.resource(),
                    self.namespace(),
                    &list_params.clone().limit(500),
                )
                .await?;
            let next = page.continue_token().map(str::to_owned);
            for object in page.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                let namespace = object.metadata.namespace.clone();
                match self
                    .client()
                    .delete(self.resource(), namespace.as_deref(), &name, &params)
                    .await
                {
                    Ok(deletion) => deleted.push(deletion.into_inner()),
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error),
                }
            }
            match next {
                Some(token) => list_params.continue_token = Some(token),
                None => break,
            }
        }
        let resource = self.resource();
        Ok(crate::response::json(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version,
                "metadata": {},
                "items": deleted,
            }),
        ))
    }

    async fn get_scale(&self, name: &str) -> Outcome {
        let scale = self
            .client()
            .get_scale(self.resource(), self.namespace(), name)
            .await?;
        Ok(crate::response::json(StatusCode::OK, &scale))
    }

    async fn replace_scale(&self, name: &str, body: Bytes) -> Outcome {
        let value = self.decode_object(&body)?;
        let scale: Scale = serde_json::from_value(value)
            .map_err(|error| bad_request(format!("the body is not a Scale: {error}")))?;
        let params = self.post_params()?;
        let scale = self
            .client()
            .replace_scale(self.resource(), self.namespace(), name, &scale, &params)
            .await?;
        Ok(crate::response::json(StatusCode::OK, &scale))
    }

    async fn patch_scale(&self, name: &str, body: Bytes) -> Outcome {
        let params = self.patch_params()?;
        if params.patch_type == PatchType::Apply {
            return Err(StatusError::new(
                StatusReason::UnsupportedMediaType,
                "server-side apply of the scale subresource is not supported",
            ));
        }
        let patch = self.decode_body(&body)?;
        let current = self
            .client()
            .get_scale(self.resource(), self.namespace(), name)
            .await?;
        let current = serde_json::to_value(&current)
            .map_err(|error| StatusError::internal(error.to_string()))?;
        let patched = apply_patch(&current, params.patch_type, &patch, Some(&MergeKeys::new()))
            .map_err(|error| bad_request(error.to_string()))?;
        let scale: Scale = serde_json::from_value(patched)
            .map_err(|error| bad_request(format!("the patched Scale is invalid: {error}")))?;
        let post = PostParams {
            dry_run: params.dry_run,
            field_manager: params.field_manager,
        };
        let scale = self
            .client()
            .replace_scale(self.resource(), self.namespace(), name, &scale, &post)
            .await?;
        Ok(crate::response::json(StatusCode::OK, &scale))
    }

    async fn bind(&self, name: &str, body: Bytes) -> Outcome {
        let binding = self.decode_object(&body)?;
        if let Some(given) = binding.pointer("/metadata/name").and_then(Value::as_str)
            && given != name
        {
            return Err(bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| bad_request("target.name: Required value"))?;
        let namespace = self.namespace().unwrap_or("default");
        self.client().bind(namespace, name, node).await?;
        Ok(success(StatusCode::CREATED, json!({})))
    }

    async fn evict(&self, name: &str, body: Bytes) -> Outcome {
        let eviction = self.decode_object(&body)?;
        let mut params = DeleteParams {
            dry_run: self.query.dry_run()?,
            ..DeleteParams::default()
        };
        if let Some(options) = eviction.get("deleteOptions").filter(|o| o.is_object()) {
            delete_options(&mut params, options)?;
        }
        // No PodDisruptionBudget kind is served, so no budget can forbid an eviction: it is
        // the pod's graceful deletion.
        self.client()
            .delete(self.resource(), self.namespace(), name, &params)
            .await?;
        Ok(success(StatusCode::CREATED, json!({})))
    }

    async fn logs(&self, name: &str) -> Outcome {
        let now = self.client().clock().now();
        let request = LogRequest::from_query(self.query, now)?;
        let object = self
            .client()
            .get(self.resource(), self.namespace(), name)
            .await?;
        let pod: Pod = object
            .into_typed()
            .map_err(|error| StatusError::internal(error.to_string()))?;
        let container = container_of(&pod, &request)?;
        let Some(logs) = &self.state.logs else {
            return Err(StatusError::new(
                StatusReason::ServiceUnavailable,
                "this server has no access to node logs",
            ));
        };
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none()
        {
            return Err(bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: the pod is not scheduled"
            )));
        }
        let stream = logs.logs(&pod, &container, &request).await?;
        let body = Body::from_stream(
            stream.map(|chunk| chunk.map_err(|error| std::io::Error::other(error.message))),
        );
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(response)
    }
}

/// A list answer, borrowing its objects.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    kind: String,
    api_version: &'a str,
    metadata: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    items: &'a [DynamicObject],
}

async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            StatusError::new(
                StatusReason::RequestEntityTooLarge,
                format!(
                    "the request body could not be read (at most {MAX_BODY_BYTES} bytes): {error}"
                ),
            )
        })
}

fn dynamic(value: Value) -> Result<DynamicObject, StatusError> {
    serde_json::from_value(value)
        .map_err(|error| bad_request(format!("the object's metadata is invalid: {error}")))
}

fn to_value(object: &DynamicObject) -> Result<Value, StatusError> {
    serde_json::to_value(object).map_err(|error| StatusError::internal(error.to_string()))
}

/// Reads a `DeleteOptions` body into `params` (its fields win over the query's).
fn delete_options(params: &mut DeleteParams, options: &Value) -> Result<(), StatusError> {
    if let Some(grace) = options.get("gracePeriodSeconds").filter(|g| !g.is_null()) {
        params.grace_period_seconds = Some(
            grace
                .as_i64()
                .ok_or_else(|| bad_request("gracePeriodSeconds must be an integer"))?,
        );
    }
    if let Some(policy) = options.get("propagationPolicy").and_then(Value::as_str) {
        params.propagation_policy = parse_propagation(Some(policy))?;
    } else if let Some(orphan) = options.get("orphanDependents").and_then(Value::as_bool) {
        params.propagation_policy = Some(if orphan {
            orchestra_core::api::PropagationPolicy::Orphan
        } else {
            orchestra_core::api::PropagationPolicy::Background
        });
    }
    if let Some(preconditions) = options.get("preconditions").filter(|p| !p.is_null()) {
        let preconditions: Preconditions = serde_json::from_value(preconditions.clone())
            .map_err(|error| bad_request(format!("preconditions: {error}")))?;
        params.preconditions = Some(preconditions);
    }
    if let Some(dry_run) = options.get("dryRun").and_then(Value::as_array) {
        params.dry_run |= dry_run.iter().any(|v| v == "All");
    }
    Ok(())
}

/// The fields a strict decoding refused as unknown.
fn unknown_fields(error: &StatusError) -> Vec<String> {
    if error.code != 400 {
        return Vec::new();
    }
    error
        .details
        .as_ref()
        .and_then(|details| details.causes.as_ref())
        .map(|causes| {
            causes
                .iter()
                .filter(|cause| cause.reason.as_deref() == Some("FieldValueUnknown"))
                .filter_map(|cause| cause.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the field a path such as `spec.containers[0].foo` names; false when there is none.
fn remove_field(value: &mut Value, path: &str) -> bool {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segments.push(Segment::Key(&rest[..open]));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    return false;
                };
                let inner = &stripped[..close];
                segments.push(match inner.parse::<usize>() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key(inner),
                });
                rest = &stripped[close + 1..];
            }
        } else {
            segments.push(Segment::Key(rest));
        }
    }
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Key(key), Value::Object(map)) => map.get_mut(*key),
            (Segment::Index(index), Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Key(key), Value::Object(map)) => map.remove(*key).is_some(),
        _ => false,
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_removed_by_path() {
        let mut value = json!({"spec": {"containers": [{"name": "a", "bogus": 1}], "extra": true}});
        assert!(remove_field(&mut value, "spec.containers[0].bogus"));
        assert!(remove_field(&mut value, "spec.extra"));
        assert!(!remove_field(&mut value, "spec.containers[3].x"));
        assert_eq!(value, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn kubectl_get_asks_for_tables() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
