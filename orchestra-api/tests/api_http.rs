//! orchestra-core's `Api<K>` test suite over HTTP: every test of `suite/objects.rs` runs against
//! a remote client (`orchestra_api::remote`) of an [`ApiServer`] on its own loopback port, over a
//! fresh `MemoryStore`. The same assertions hold as in-process: the HTTP path runs the same
//! defaulting, validation and admission, and errors come back as the same `Status` errors.

#[path = "../../orchestra-core/tests/suite/objects.rs"]
mod objects;

use orchestra_api::ApiServer;
use orchestra_api::remote::RemoteConfig;
use orchestra_api::tls::serve_plain;
use orchestra_core::api::Client;
use orchestra_core::store::MemoryStore;

/// The client the suite runs on: remote, through an API server over a fresh store.
async fn client() -> Client {
    let local = Client::new(MemoryStore::new());
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
