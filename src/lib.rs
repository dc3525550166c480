//! Orchestra: container orchestration as a Rust SDK.
//!
//! Orchestra implements the Kubernetes model — pods, nodes, replica sets, deployments, services, a
//! scheduler, controllers and a node agent — as crates that a Rust program composes into its own
//! control plane, with pluggable stores, container runtimes and networks. This facade crate
//! re-exports those crates under one name and builds the all-in-one `orchestra` binary.
//!
//! | module | crate | holds |
//! |---|---|---|
//! | [`core`] | `orchestra-core` | the model and the logic: resources, selectors, quantities, manifests, defaulting, validation; later the store seam, the typed API, controllers, scheduler and node agent |
//! | [`store`] | `orchestra-store` | durable store backends (embedded, etcd) |
//! | [`runtime`] | `orchestra-runtime` | container runtime backends (process, youki, Docker) |
//! | [`net`] | `orchestra-net` | pod networking, service proxies, cluster DNS |
//! | [`api`] | `orchestra-api` | the Kubernetes-compatible HTTP API server and client |
//!
//! # Examples
//!
//! Check a manifest offline, as `orchestra validate` does:
//!
//! ```
//! use orchestra::core::{manifest, scheme::Scheme};
//!
//! let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";
//! let scheme = Scheme::default();
//! for document in manifest::parse_all(text)? {
//!     let decoded = scheme.decode(&document).expect("the service is valid");
//!     assert_eq!(decoded.object.data["spec"]["type"], "ClusterIP");
//! }
//! # Ok::<(), manifest::SyntaxError>(())
//! ```
#![doc(test(attr(deny(warnings))))]

pub use orchestra_api as api;
pub use orchestra_core as core;
pub use orchestra_net as net;
pub use orchestra_runtime as runtime;
pub use orchestra_store as store;
