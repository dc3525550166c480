//! The Kubernetes-compatible HTTP API server of Orchestra, and its remote client.
//!
//! This crate will serve the typed `Api` of `orchestra-core` over Kubernetes' REST API (discovery,
//! OpenAPI v3, CRUD, patch, watch, the `Table` format, status and scale subresources), so that
//! `kubectl`, kube-rs and the official Python client work against an Orchestra control plane
//! unchanged; and it will hold the remote client that node agents and controllers on other machines
//! use to reach that server. The HTTP path runs the same defaulting, validation and admission as the
//! in-process path.
//!
//! **Status:** nothing is implemented here yet; the server arrives with issue 8. The crate exists
//! now so that the workspace layout and the dependency rule hold from the start.
#![doc(test(attr(deny(warnings))))]
