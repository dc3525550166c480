//! Orchestra: container orchestration as a Rust SDK.
pub use orchestra_core as core;
