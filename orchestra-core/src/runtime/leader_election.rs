//! Leader election over a `Lease` object, so that only one instance of a controller acts.
//!
//! Every candidate runs the same [`LeaderElector`] over the same `Lease`
//! (`coordination.k8s.io/v1`). The lease names its holder and when the holder last renewed it; a
//! candidate takes the lease when it is free or its holder has not renewed it for
//! [`LeaderElectionConfig::lease_duration`], through an optimistic update so that two candidates
//! cannot both take it. The leader renews every [`LeaderElectionConfig::retry_period`]; when it has
//! not managed to renew for [`LeaderElectionConfig::renew_deadline`] — which is shorter than the
//! lease duration — it stops acting, before anyone else may take over. So two instances never act
//! at once, as long as they share a clock (the client's [`Clock`](crate::clock::Clock)); this is
//! client-go's `leaderelection` package, on Orchestra's `Api`.
//!
//! [`LeaderElector::run`] acquires the lease, runs the given work while the lease is held and
//! returns when the work ends (releasing the lease, so a successor need not wait) or when the
//! lease is lost (dropping the work, which stops it).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::time::Instant;

use crate::api::{Api, PostParams};
use crate::status::{StatusError, StatusReason};

/// How a candidate takes and keeps a lease.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// The lease's name.
    pub lease_name: String,
    /// The lease's namespace.
    pub namespace: String,
    /// This candidate's identity (unique among candidates).
    pub identity: String,
    /// How long a lease that is not renewed stays held (15 s by default).
    pub lease_duration: Duration,
    /// How long the leader keeps acting without managing to renew (10 s by default).
    pub renew_deadline: Duration,
    /// How often candidates try to take the lease, and the leader renews it (2 s by default).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// A configuration with client-go's default timings.
    pub fn new(namespace: &str, lease_name: &str, identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_name: lease_name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why leadership ended without the work finishing.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaderElectionError {
    /// The timings cannot be safe: the renew deadline must be shorter than the lease duration,
    /// and longer than the retry period.
    #[error("unsafe leader election timings: {0}")]
    Config(String),
    /// The leader could not renew the lease within the renew deadline; the work was stopped.
    #[error("lost the lease {0}")]
    LeaseLost(String),
}

/// A candidate for the leadership of one lease.
#[derive(Clone, Debug)]
pub struct LeaderElector {
    leases: Api<Lease>,
    config: LeaderElectionConfig,
    leader: tokio::sync::watch::Sender<bool>,
}

fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl LeaderElector {
    /// A candidate over `config.namespace/config.lease_name`, through `client`.
    pub fn new(
        client: crate::api::Client,
        config: LeaderElectionConfig,
    ) -> Result<LeaderElector, LeaderElectionError> {
        if config.renew_deadline >= config.lease_duration {
            return Err(LeaderElectionError::Config(
                "the renew deadline must be shorter than the lease duration".into(),
            ));
        }
        if config.retry_period >= config.renew_deadline {
            return Err(LeaderElectionError::Config(
                "the retry period must be shorter than the renew deadline".into(),
            ));
        }
        let (leader, _) = tokio::sync::watch::channel(false);
        Ok(LeaderElector {
            leases: Api::namespaced(client, &config.namespace),
            config,
            leader,
        })
    }

    /// Whether this candidate holds the lease now, as a channel that changes when it does.
    pub fn is_leader(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Acquires the lease (waiting as long as it takes), runs `work` while holding it, and
    /// returns the work's output when it finishes (and releases the lease), or
    /// [`LeaderElectionError::LeaseLost`] when the lease could not be renewed in time (the work is
    /// dropped, which stops it).
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LeaderElectionError> {
        loop {
            if self.try_acquire_or_renew().await.unwrap_or(false) {
                break;
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        self.leader.send_replace(true);
        let mut last_renewal = Instant::now();
        let work = std::pin::pin!(work);
        let mut work = work;
        let outcome = loop {
            tokio::select! {
                biased;
                output = &mut work => break Ok(output),
                () = tokio::time::sleep(self.config.retry_period) => {
                    if self.try_acquire_or_renew().await.unwrap_or(false) {
                        last_renewal = Instant::now();
                    } else if last_renewal.elapsed() >= self.config.renew_deadline {
                        break Err(LeaderElectionError::LeaseLost(format!(
                            "{}/{}",
                            self.config.namespace, self.config.lease_name
                        )));
                    }
                }
            }
        };
        self.leader.send_replace(false);
        if outcome.is_ok() {
            // Best effort: a successor need not wait for the lease to expire.
            let _ = self.release().await;
        }
        outcome
    }

    fn now(&self) -> MicroTime {
        MicroTime(self.leases.client().clock().now())
    }

    fn held_by_other(&self, spec: &LeaseSpec) -> bool {
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() || holder == self.config.identity {
            return false;
        }
        let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
            return false;
        };
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
        let expiry = renewed
            .0
            .checked_add(jiff::SignedDuration::from_secs(duration))
            .unwrap_or(renewed.0);
        expiry > self.now().0
    }

    /// One attempt: create the lease, take it over, or renew it. `Ok(true)` when this candidate
    /// holds it afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, StatusError> {
        let now = self.now();
        let duration = whole_seconds(self.config.lease_duration);
        let Some(mut lease) = self.leases.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(error) if error.reason == StatusReason::AlreadyExists => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if self.held_by_other(spec) {
            return Ok(false);
        }
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(now.clone());
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration);
        match self
            .leases
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.is_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up: no holder, so the next candidate takes it at once.
    async fn release(&self) -> Result<(), StatusError> {
        let Some(mut lease) = self.leases.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(self.now());
        self.leases
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}
