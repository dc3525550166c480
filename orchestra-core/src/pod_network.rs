//! The pod network seam: how a pod sandbox gets its addresses, shaped as Kubernetes' CNI.
//!
//! The node agent is the only caller. After the runtime created a pod sandbox, the agent
//! [attaches](PodNetwork::attach) it to the pod network (CNI `ADD`), which gives it its addresses;
//! the agent passes them to the runtime (in
//! [`PodSandboxConfig::ips`](crate::container_runtime::PodSandboxConfig::ips)), into the
//! containers' `POD_IP` and into the pod's `status.podIPs`. When the sandbox is removed the agent
//! [detaches](PodNetwork::detach) it (CNI `DEL`), which releases them; [`PodNetwork::status`]
//! (like CNI `CHECK`) tells what a sandbox holds, so a restarted agent can find its pods'
//! addresses again.
//!
//! The backends live in `orchestra-net`: the loopback network (each pod its own `127.x` address,
//! no root needed) now, CNI plugins later. [`FakeNetwork`] is the in-memory one for tests, which
//! records every call and fails the ones a test asks it to.
//!
//! Calls follow CNI's contract: attaching a sandbox that is already attached returns the same
//! addresses, detaching one that is not attached succeeds (the agent retries both freely), and
//! every error names what failed.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::pod_network::{FakeNetwork, PodNetwork, PodNetworkRequest, NetworkError};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let network = FakeNetwork::new();
//! let request = PodNetworkRequest {
//!     sandbox_id: "sandbox-1".into(),
//!     pod_namespace: "default".into(),
//!     pod_name: "web".into(),
//!     pod_uid: "u1".into(),
//! };
//! let status = network.attach(&request).await?;
//! assert_eq!(status.ips, vec!["10.244.0.1".parse::<std::net::IpAddr>().unwrap()]);
//! assert_eq!(network.attach(&request).await?, status);
//! network.detach("sandbox-1").await?;
//! assert_eq!(network.status("sandbox-1").await?, None);
//! # Ok::<(), NetworkError>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

/// What the agent attaches: a pod sandbox and the pod it is for (CNI's container id and its
/// `K8S_POD_*` arguments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// The runtime's id of the sandbox; what the addresses are held by.
    pub sandbox_id: String,
    /// The pod's namespace.
    pub pod_namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's uid.
    pub pod_uid: String,
}

impl PodNetworkRequest {
    /// Checks what every backend needs: a sandbox id that is not empty and has no control
    /// characters (backends keep it in files and logs).
    pub fn validate(&self) -> Result<(), NetworkError> {
        validate_sandbox_id(&self.sandbox_id)
    }
}

/// Checks a sandbox id as [`PodNetworkRequest::validate`] does.
pub fn validate_sandbox_id(sandbox_id: &str) -> Result<(), NetworkError> {
    if sandbox_id.is_empty() {
        return Err(NetworkError::invalid("sandbox_id", "must not be empty"));
    }
    if sandbox_id.chars().any(char::is_control) {
        return Err(NetworkError::invalid(
            "sandbox_id",
            format!("{sandbox_id:?} has control characters"),
        ));
    }
    Ok(())
}

/// What a sandbox holds on the pod network (CNI's result).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// Its addresses (the pod IPs), the primary one first.
    pub ips: Vec<IpAddr>,
    /// The interface they are on, as the pod sees it (`eth0`; `lo` for the loopback network),
    /// if the backend names one.
    pub interface: Option<String>,
}

/// Why a pod network call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Every address of the range is held.
    #[error("no address left in {range}")]
    Exhausted {
        /// The range, in CIDR notation (`127.10.0.0/16`).
        range: String,
    },
    /// A field of the request or of the backend's configuration cannot be used.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field (`sandbox_id`, `range`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the backend's persisted state cannot be read; the backend changed nothing and
    /// will not overwrite it (someone must look at it).
    #[error("corrupt network state in {}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend (its state directory, its plugins) cannot be reached now; the call may be
    /// retried.
    #[error("pod network unavailable: {0}")]
    Unavailable(String),
    /// Anything else, with the cause.
    #[error("pod network error: {0}")]
    Internal(String),
}

impl NetworkError {
    /// A [`NetworkError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> NetworkError {
        NetworkError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A pod network: gives pod sandboxes their addresses and takes them back (CNI's `ADD`, `DEL`
/// and `CHECK`).
///
/// Attaching an attached sandbox returns the addresses it holds and detaching one that holds
/// none succeeds, so the node agent can retry after a crash.
#[async_trait]
pub trait PodNetwork: Send + Sync + fmt::Debug + 'static {
    /// Gives the sandbox its addresses (CNI `ADD`); the same ones again if it holds some.
    async fn attach(&self, sandbox: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError>;

    /// Releases what the sandbox holds (CNI `DEL`); succeeds if it holds nothing.
    async fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError>;

    /// What the sandbox holds, if it is attached.
    async fn status(&self, sandbox_id: &str) -> Result<Option<PodNetworkStatus>, NetworkError>;

    /// The backend's name (`loopback`, `cni`, `fake`), for logs and the node's status.
    fn name(&self) -> &str;
}

/// A [`PodNetwork`] operation: what [`NetworkCall`]s record and failures are injected by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkOperation {
    /// [`PodNetwork::attach`].
    Attach,
    /// [`PodNetwork::detach`].
    Detach,
    /// [`PodNetwork::status`].
    Status,
}

/// One call [`FakeNetwork`] received, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkCall {
    /// Which operation.
    pub operation: NetworkOperation,
    /// The sandbox it was about.
    pub sandbox_id: String,
}

/// The range [`FakeNetwork`] hands addresses out of.
const FAKE_RANGE: &str = "10.244.0.0/24";

#[derive(Debug, Default)]
struct FakeState {
    attached: BTreeMap<String, PodNetworkStatus>,
    calls: Vec<NetworkCall>,
    failures: Vec<(NetworkOperation, NetworkError)>,
    /// The last host number handed out (0: none yet).
    last: u8,
}

/// An in-memory [`PodNetwork`] for tests.
///
/// It hands out `10.244.0.1`, `10.244.0.2`, ... in order on interface `eth0`, never reusing one,
/// and is [exhausted](NetworkError::Exhausted) after `10.244.0.254`. It records every call
/// ([`FakeNetwork::calls`]) and fails the ones a test asks it to ([`FakeNetwork::fail_next`]).
/// Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct FakeNetwork {
    state: Arc<Mutex<FakeState>>,
}

impl FakeNetwork {
    /// A network with nothing attached.
    pub fn new() -> FakeNetwork {
        FakeNetwork::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // Each change is made whole under the lock, so a poisoned lock holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a call and applies an injected failure; the state, locked, to carry it out.
    fn begin(
        &self,
        operation: NetworkOperation,
        sandbox_id: &str,
    ) -> Result<MutexGuard<'_, FakeState>, NetworkError> {
        let mut state = self.lock();
        state.calls.push(NetworkCall {
            operation,
            sandbox_id: sandbox_id.to_owned(),
        });
        if let Some(index) = state.failures.iter().position(|(op, _)| *op == operation) {
            let (_, error) = state.failures.remove(index);
            return Err(error);
        }
        Ok(state)
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<NetworkCall> {
        self.lock().calls.clone()
    }

    /// Makes the next call of `operation` fail with `error` (after the failures already queued
    /// for it); the failed call changes nothing.
    pub fn fail_next(&self, operation: NetworkOperation, error: NetworkError) {
        self.lock().failures.push((operation, error));
    }

    /// The attached sandboxes and what they hold, by sandbox id.
    pub fn attached(&self) -> BTreeMap<String, PodNetworkStatus> {
        self.lock().attached.clone()
    }
}

#[async_trait]
impl PodNetwork for FakeNetwork {
    async fn attach(&self, sandbox: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        let mut state = self.begin(NetworkOperation::Attach, &sandbox.sandbox_id)?;
        sandbox.validate()?;
        if let Some(status) = state.attached.get(&sandbox.sandbox_id) {
            return Ok(status.clone());
        }
        if state.last == 254 {
            return Err(NetworkError::Exhausted {
                range: FAKE_RANGE.to_owned(),
            });
        }
        state.last += 1;
        let status = PodNetworkStatus {
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 244, 0, state.last))],
            interface: Some("eth0".to_owned()),
        };
        state
            .attached
            .insert(sandbox.sandbox_id.clone(), status.clone());
        Ok(status)
    }

    async fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        let mut state = self.begin(NetworkOperation::Detach, sandbox_id)?;
        state.attached.remove(sandbox_id);
        Ok(())
    }

    async fn status(&self, sandbox_id: &str) -> Result<Option<PodNetworkStatus>, NetworkError> {
        let state = self.begin(NetworkOperation::Status, sandbox_id)?;
        Ok(state.attached.get(sandbox_id).cloned())
    }

    fn name(&self) -> &str {
        "fake"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> PodNetworkRequest {
        PodNetworkRequest {
            sandbox_id: id.to_owned(),
            pod_namespace: "default".to_owned(),
            pod_name: format!("pod-{id}"),
            pod_uid: format!("uid-{id}"),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 244, 0, last))
    }

    #[tokio::test]
    async fn fake_hands_out_addresses_in_order_and_is_idempotent() {
        let network = FakeNetwork::new();
        let a = network.attach(&request("a")).await.unwrap();
        let b = network.attach(&request("b")).await.unwrap();
        assert_eq!(a.ips, vec![ip(1)]);
        assert_eq!(b.ips, vec![ip(2)]);
        assert_eq!(a.interface.as_deref(), Some("eth0"));
        assert_eq!(network.attach(&request("a")).await.unwrap(), a);
        assert_eq!(network.status("b").await.unwrap(), Some(b));
        assert_eq!(network.name(), "fake");
    }

    #[tokio::test]
    async fn fake_detach_releases_and_unknown_detach_succeeds() {
        let network = FakeNetwork::new();
        network.attach(&request("a")).await.unwrap();
        network.detach("a").await.unwrap();
        network.detach("a").await.unwrap();
        network.detach("never").await.unwrap();
        assert_eq!(network.status("a").await.unwrap(), None);
        assert!(network.attached().is_empty());
        // Addresses are not reused.
        assert_eq!(
            network.attach(&request("a")).await.unwrap().ips,
            vec![ip(2)]
        );
    }

    #[tokio::test]
    async fn fake_records_calls_and_injects_failures() {
        let network = FakeNetwork::new();
        network.fail_next(
            NetworkOperation::Attach,
            NetworkError::Unavailable("down".to_owned()),
        );
        assert_eq!(
            network.attach(&request("a")).await,
            Err(NetworkError::Unavailable("down".to_owned()))
        );
        assert!(network.attached().is_empty());
        network.attach(&request("a")).await.unwrap();
        network.detach("a").await.unwrap();
        let calls: Vec<_> = network
            .calls()
            .into_iter()
            .map(|call| (call.operation, call.sandbox_id))
            .collect();
        assert_eq!(
            calls,
            vec![
                (NetworkOperation::Attach, "a".to_owned()),
                (NetworkOperation::Attach, "a".to_owned()),
                (NetworkOperation::Detach, "a".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn fake_is_exhausted_after_254_addresses() {
        let network = FakeNetwork::new();
        for n in 0..254 {
            network.attach(&request(&n.to_string())).await.unwrap();
        }
        assert_eq!(
            network.attach(&request("more")).await,
            Err(NetworkError::Exhausted {
                range: "10.244.0.0/24".to_owned()
            })
        );
    }

    #[tokio::test]
    async fn invalid_sandbox_ids_are_rejected_naming_the_field() {
        let network = FakeNetwork::new();
        for id in ["", "a\nb"] {
            match network.attach(&request(id)).await {
                Err(NetworkError::InvalidArgument { field, .. }) => assert_eq!(field, "sandbox_id"),
                other => panic!("{id:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_what_failed() {
        let error = NetworkError::CorruptState {
            path: PathBuf::from("/state/127.10.0.1"),
            reason: "empty".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "corrupt network state in /state/127.10.0.1: empty"
        );
        assert_eq!(
            NetworkError::invalid("range", "bad").to_string(),
            "invalid range: bad"
        );
    }
}
