//! The controller runtime: watcher → reflector → work queue → controller.
//!
//! A controller watches the objects it cares about, keeps them in a local cache, reduces every
//! change to the key of an object to reconcile, and runs its reconcile function on those keys
//! from a work queue. Each layer stands alone:
//!
//! - [`watcher`]: list then watch, re-listing on 410 Gone, as a stream of events;
//! - [`reflector`]: a cache fed by a watcher, shared through cheap readers, with a readiness
//!   barrier;
//! - [`queue`]: the work queue (per-key dedup, delays, back-off from [`rate_limit`], bounded
//!   concurrency, never one key on two workers) and [`Action`], what a reconcile returns;
//! - [`controller`]: the `Controller` builder that puts them together (`owns`, `watches`);
//! - [`leader_election`]: one acting instance among several, over a `Lease`;
//! - [`events`]: recording Events about objects for users to read.

pub mod controller;
pub mod events;
pub mod leader_election;
pub mod queue;
pub mod rate_limit;
pub mod reflector;
pub mod watcher;

pub use queue::{Action, WorkQueue};
