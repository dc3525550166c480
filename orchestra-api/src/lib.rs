//! The Kubernetes-compatible HTTP API server of Orchestra, and its remote client.
//!
//! This crate is the control plane's front door. [`ApiServer`] serves the typed API of
//! `orchestra-core` (its [`Client`](orchestra_core::api::Client)) over Kubernetes' REST API, so
//! that `kubectl`, kube-rs and the official Python client work against an Orchestra control plane
//! unchanged:
//!
//! - `/version`, `/healthz`, `/livez`, `/readyz`;
//! - discovery ([`discovery`]): `/api`, `/apis`, the per-group-version resource lists, and the
//!   aggregated discovery document current `kubectl` asks for;
//! - OpenAPI v3 documents generated from the kinds' schemas ([`openapi`]), for `kubectl explain`
//!   and `kubectl apply`;
//! - create, get, list (selectors, pages), update, patch (JSON, merge, strategic merge,
//!   server-side apply), delete and deletecollection, watch ([`watch`]), the `Table` format of
//!   `kubectl get` ([`table`]), and the subresources `status`, `scale`, `binding`, `eviction` and
//!   `log` ([`logs`]);
//! - `dryRun`, `fieldValidation`, and every failure as a `Status` object ([`response`]);
//! - request bodies in JSON, YAML, or Kubernetes' protobuf ([`protobuf`], what kubectl's typed
//!   commands such as `kubectl create deployment` send).
//!
//! Every resource request goes through the same `Client` an embedding program uses in-process:
//! one code path for defaulting, validation, admission, concurrency and watches.
//!
//! Around the server: HTTPS with a CA and serving certificate made on first start, and serving
//! with graceful shutdown ([`tls`]); bearer-token authentication — a static token file and
//! service-account tokens ([`authn`]); authorization — RBAC over the stored roles and bindings,
//! the node authorizer, impersonation, escalation checks and the access reviews ([`authz`]); an
//! audit log of every request ([`audit`]); kubeconfigs ([`kubeconfig`]); and the other direction, the
//! remote client ([`remote`]) that gives controllers, schedulers and node agents in other
//! processes the same `Api<K>` over HTTP, and the node side of `kubectl logs`
//! ([`logs::node_log_router`]).
//!
//! ```no_run
//! use orchestra_api::ApiServer;
//! use orchestra_api::tls::serve_plain;
//! use orchestra_core::api::Client;
//! use orchestra_core::store::MemoryStore;
//!
//! # #[allow(dead_code)]
//! # async fn run() -> std::io::Result<()> {
//! let client = Client::new(MemoryStore::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // kubectl --server http://127.0.0.1:8080 get namespaces
//! serve_plain(listener, ApiServer::new(client).router(), std::future::pending()).await
//! # }
//! ```
#![doc(test(attr(deny(warnings))))]

pub mod audit;
pub mod authn;
pub mod authz;
pub mod discovery;
pub mod kubeconfig;
pub mod logs;
pub mod openapi;
pub mod protobuf;
pub mod remote;
pub mod request;
pub mod response;
pub mod server;
pub mod table;
pub mod tls;
pub mod watch;

pub use server::{ApiServer, ApiServerBuilder};
