//! [`LoopbackNetwork`]: every pod its own `127.x.y.z` address, no root needed.
//!
//! Linux routes the whole of `127.0.0.0/8` to the loopback interface, so a process can bind any
//! address in it without configuring anything. The loopback network gives each pod sandbox one
//! address of a range inside it (by default [`DEFAULT_RANGE`], `127.10.0.0/16`), so replicas of
//! one app can listen on the same port side by side, each on its own address, and reach each
//! other on the node. It is the embedded default of the node agent; it does not isolate pods
//! (they share the host's network namespace) and its addresses are reachable only from the node.
//!
//! Addresses are handed out as CNI's `host-local` IPAM does: round-robin from the last one handed
//! out, skipping the range's first (network) and last (broadcast) addresses and those held, so a
//! released address is reused only after the others were. Each allocation is a file of the state
//! directory named by the address and holding the sandbox id (as `host-local` keeps
//! `/var/lib/cni/networks/<name>/<ip>`), written atomically; [`LoopbackNetwork::open`] reads them
//! back, so a restarted agent never hands a running pod's address to another pod. A file it cannot
//! read is a [`NetworkError::CorruptState`] naming it, and nothing is overwritten.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::pod_network::{PodNetwork, PodNetworkRequest};
//! use orchestra_net::loopback::LoopbackNetwork;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("orchestra-loopback-doc-{}", std::process::id()));
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let network = LoopbackNetwork::open(&dir, "127.10.0.0/16")?;
//! let request = PodNetworkRequest { sandbox_id: "sandbox-1".into(), ..Default::default() };
//! let status = network.attach(&request).await?;
//! assert_eq!(status.ips, vec!["127.10.0.1".parse::<std::net::IpAddr>()?]);
//! let listener = std::net::TcpListener::bind((status.ips[0], 0))?;
//! # drop(listener);
//! network.detach("sandbox-1").await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use orchestra_core::pod_network::{
    NetworkError, PodNetwork, PodNetworkRequest, PodNetworkStatus, validate_sandbox_id,
};

/// The range the loopback network hands addresses out of unless told otherwise.
pub const DEFAULT_RANGE: &str = "127.10.0.0/16";

/// The shortest prefix a range may have (at most 65 536 addresses).
pub const MIN_PREFIX_LEN: u8 = 16;
/// The longest prefix a range may have (4 addresses, 2 of them usable).
pub const MAX_PREFIX_LEN: u8 = 30;

/// The file of the state directory holding the last address handed out (as `host-local`'s
/// `last_reserved_ip.0`).
const LAST_RESERVED: &str = "last_reserved_ip";

/// The interface loopback addresses are on.
const INTERFACE: &str = "lo";

/// The field errors about the range name.
const RANGE_FIELD: &str = "range";

/// A range of loopback addresses in CIDR notation: inside `127.0.0.0/8`, a prefix of
/// [`MIN_PREFIX_LEN`]..=[`MAX_PREFIX_LEN`] bits, no host bits set, and not holding `127.0.0.1`
/// (the node's own services listen there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopbackRange {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl LoopbackRange {
    /// The range of `network`/`prefix_len`, if it is a valid loopback range (otherwise a
    /// [`NetworkError::InvalidArgument`] naming the field `range`).
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<LoopbackRange, NetworkError> {
        let cidr = format!("{network}/{prefix_len}");
        if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&prefix_len) {
            return Err(NetworkError::invalid(
                RANGE_FIELD,
                format!(
                    "{cidr}: the prefix length must be {MIN_PREFIX_LEN} to {MAX_PREFIX_LEN} bits"
                ),
            ));
        }
        if network.octets()[0] != 127 {
            return Err(NetworkError::invalid(
                RANGE_FIELD,
                format!("{cidr} is not inside the loopback range 127.0.0.0/8"),
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        let bits = u32::from(network);
        if bits & !mask != 0 {
            return Err(NetworkError::invalid(
                RANGE_FIELD,
                format!(
                    "{cidr} has host bits set (did you mean {}/{prefix_len}?)",
                    Ipv4Addr::from(bits & mask)
                ),
            ));
        }
        let range = LoopbackRange {
            network,
            prefix_len,
        };
        if range.holds(Ipv4Addr::LOCALHOST) {
            return Err(NetworkError::invalid(
                RANGE_FIELD,
                format!("{cidr} holds 127.0.0.1, the node's own address"),
            ));
        }
        Ok(range)
    }

    /// Parses `127.10.0.0/16`.
    pub fn parse(cidr: &str) -> Result<LoopbackRange, NetworkError> {
        let invalid =
            |reason: &str| NetworkError::invalid(RANGE_FIELD, format!("{cidr:?}: {reason}"));
        let (address, prefix_len) = cidr
            .split_once('/')
            .ok_or_else(|| invalid("expected an address and a prefix length, as 127.10.0.0/16"))?;
        let network = address
            .parse::<Ipv4Addr>()
            .map_err(|_| invalid("not an IPv4 address"))?;
        let prefix_len = prefix_len
            .parse::<u8>()
            .map_err(|_| invalid("not a prefix length"))?;
        LoopbackRange::new(network, prefix_len)
    }

    /// The network address (the range's first, never handed out).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The first address handed out (the one after the network address).
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The last address handed out (the one before the broadcast address).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.broadcast() - 1)
    }

    /// How many addresses can be handed out.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix_len))) - 2
    }

    /// Whether `address` is one that can be handed out.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&address)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | (u32::MAX >> u32::from(self.prefix_len))
    }

    /// Whether `address` is in the range at all, network and broadcast addresses included.
    fn holds(&self, address: Ipv4Addr) -> bool {
        (u32::from(self.network)..=self.broadcast()).contains(&u32::from(address))
    }

    /// The address after `previous` in round-robin order (the first after the last, or when
    /// `previous` is not in the range).
    fn after(&self, previous: Option<Ipv4Addr>) -> Ipv4Addr {
        match previous {
            Some(previous) if self.contains(previous) && previous != self.last() => {
                Ipv4Addr::from(u32::from(previous) + 1)
            }
            _ => self.first(),
        }
    }
}

impl Default for LoopbackRange {
    /// [`DEFAULT_RANGE`].
    fn default() -> LoopbackRange {
        LoopbackRange {
            network: Ipv4Addr::new(127, 10, 0, 0),
            prefix_len: 16,
        }
    }
}

impl FromStr for LoopbackRange {
    type Err = NetworkError;

    fn from_str(cidr: &str) -> Result<LoopbackRange, NetworkError> {
        LoopbackRange::parse(cidr)
    }
}

impl fmt::Display for LoopbackRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The allocations, as the state directory holds them.
#[derive(Debug, Default)]
struct State {
    by_sandbox: BTreeMap<String, Ipv4Addr>,
    by_address: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out.
    last: Option<Ipv4Addr>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    range: LoopbackRange,
    state: Mutex<State>,
}

/// The loopback pod network (see the [module](self)).
///
/// Clones share the same allocations. One state directory must be used by one
/// `LoopbackNetwork` at a time.
#[derive(Clone, Debug)]
pub struct LoopbackNetwork {
    inner: Arc<Inner>,
}

impl LoopbackNetwork {
    /// Opens the network whose allocations are kept in `dir` (created if missing), handing out
    /// addresses of `range` (such as [`DEFAULT_RANGE`]).
    ///
    /// Reads every allocation in `dir` (blocking file I/O; call it at start-up). Allocations
    /// outside `range` (from an earlier configuration) are kept and reported until detached.
    ///
    /// # Errors
    ///
    /// [`NetworkError::InvalidArgument`] for a range that is not a [`LoopbackRange`];
    /// [`NetworkError::CorruptState`] for a file of `dir` that cannot be read back;
    /// [`NetworkError::Unavailable`] when `dir` cannot be created or listed.
    pub fn open(dir: impl Into<PathBuf>, range: &str) -> Result<LoopbackNetwork, NetworkError> {
        LoopbackNetwork::open_range(dir, LoopbackRange::parse(range)?)
    }

    /// [`LoopbackNetwork::open`] with a parsed range.
    pub fn open_range(
        dir: impl Into<PathBuf>,
        range: LoopbackRange,
    ) -> Result<LoopbackNetwork, NetworkError> {
        let dir = dir.into();
        let state = load(&dir)?;
        Ok(LoopbackNetwork {
            inner: Arc::new(Inner {
                dir,
                range,
                state: Mutex::new(state),
            }),
        })
    }

    /// The range addresses are handed out of.
    pub fn range(&self) -> LoopbackRange {
        self.inner.range
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Every sandbox attached and its address, by sandbox id.
    pub fn allocations(&self) -> BTreeMap<String, Ipv4Addr> {
        self.inner.lock().by_sandbox.clone()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change is made whole under the lock (files first, then memory), so a poisoned
        // lock holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attach(&self, sandbox_id: &str) -> Result<Ipv4Addr, NetworkError> {
        validate_sandbox_id(sandbox_id)?;
        let mut state = self.lock();
        if let Some(address) = state.by_sandbox.get(sandbox_id) {
            return Ok(*address);
        }
        let mut candidate = self.range.after(state.last);
        let mut free = None;
        for _ in 0..self.range.size() {
            if !state.by_address.contains_key(&candidate) {
                free = Some(candidate);
                break;
            }
            candidate = self.range.after(Some(candidate));
        }
        let address = free.ok_or_else(|| NetworkError::Exhausted {
            range: self.range.to_string(),
        })?;
        // The last address first: it is only a hint, and written before the allocation it can
        // never point before one that exists.
        write_atomically(&self.dir, LAST_RESERVED, &address.to_string())?;
        state.last = Some(address);
        write_atomically(&self.dir, &address.to_string(), &format!("{sandbox_id}\n"))?;
        state.by_sandbox.insert(sandbox_id.to_owned(), address);
        state.by_address.insert(address, sandbox_id.to_owned());
        Ok(address)
    }

    fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        let mut state = self.lock();
        let Some(address) = state.by_sandbox.get(sandbox_id).copied() else {
            return Ok(());
        };
        let path = self.dir.join(address.to_string());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(unavailable("removing", &path, &error)),
        }
        state.by_sandbox.remove(sandbox_id);
        state.by_address.remove(&address);
        Ok(())
    }
}

fn status_of(address: Ipv4Addr) -> PodNetworkStatus {
    PodNetworkStatus {
        ips: vec![IpAddr::V4(address)],
        interface: Some(INTERFACE.to_owned()),
    }
}

fn unavailable(doing: &str, path: &Path, error: &io::Error) -> NetworkError {
    NetworkError::Unavailable(format!("{doing} {}: {error}", path.display()))
}

fn corrupt(path: &Path, reason: impl Into<String>) -> NetworkError {
    NetworkError::CorruptState {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads the allocations of `dir`, creating it if missing.
fn load(dir: &Path) -> Result<State, NetworkError> {
    fs::create_dir_all(dir).map_err(|error| unavailable("creating", dir, &error))?;
    let entries = fs::read_dir(dir).map_err(|error| unavailable("listing", dir, &error))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| unavailable("listing", dir, &error))?;
        files.push(entry.path());
    }
    // In address order, so that which of two files claiming one sandbox is reported is stable.
    files.sort();
    let mut state = State::default();
    for path in files {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name == LAST_RESERVED {
            let text = read_text(&path)?;
            let last = text
                .trim_end()
                .parse::<Ipv4Addr>()
                .map_err(|_| corrupt(&path, format!("{text:?} is not an IPv4 address")))?;
            state.last = Some(last);
            continue;
        }
        // Other files (temporary files of an interrupted write, anything else) are not ours.
        let Ok(address) = name.parse::<Ipv4Addr>() else {
            continue;
        };
        let text = read_text(&path)?;
        let sandbox_id = text.strip_suffix('\n').unwrap_or(&text);
        validate_sandbox_id(sandbox_id).map_err(|error| match error {
            NetworkError::InvalidArgument { reason, .. } => {
                corrupt(&path, format!("the sandbox id {reason}"))
            }
            other => other,
        })?;
        if let Some(held) = state.by_sandbox.get(sandbox_id) {
            return Err(corrupt(
                &path,
                format!("sandbox {sandbox_id:?} already holds {held}"),
            ));
        }
        state.by_sandbox.insert(sandbox_id.to_owned(), address);
        state.by_address.insert(address, sandbox_id.to_owned());
    }
    Ok(state)
}

fn read_text(path: &Path) -> Result<String, NetworkError> {
    let metadata = fs::metadata(path).map_err(|error| unavailable("reading", path, &error))?;
    if !metadata.is_file() {
        return Err(corrupt(path, "not a regular file"));
    }
    let bytes = fs::read(path).map_err(|error| unavailable("reading", path, &error))?;
    String::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8"))
}

/// Writes `contents` to `dir/name` so that it holds either its old or its new contents whatever
/// happens: through a temporary file, synced, then renamed over it.
fn write_atomically(dir: &Path, name: &str, contents: &str) -> Result<(), NetworkError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|error| {
        let _ = fs::remove_file(&temporary);
        unavailable("writing", &path, &error)
    })
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| NetworkError::Internal(format!("loopback network task: {error}")))?
}

#[async_trait]
impl PodNetwork for LoopbackNetwork {
    async fn attach(&self, sandbox: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        sandbox.validate()?;
        let inner = Arc::clone(&self.inner);
        let sandbox_id = sandbox.sandbox_id.clone();
        let address = blocking(move || inner.attach(&sandbox_id)).await?;
        Ok(status_of(address))
    }

    async fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        let inner = Arc::clone(&self.inner);
        let sandbox_id = sandbox_id.to_owned();
        blocking(move || inner.detach(&sandbox_id)).await
    }

    async fn status(&self, sandbox_id: &str) -> Result<Option<PodNetworkStatus>, NetworkError> {
        Ok(self
            .inner
            .lock()
            .by_sandbox
            .get(sandbox_id)
            .copied()
            .map(status_of))
    }

    fn name(&self) -> &str {
        "loopback"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str) -> LoopbackRange {
        LoopbackRange::parse(cidr).unwrap()
    }

    #[test]
    fn default_range_is_127_10_0_0_16() {
        assert_eq!(LoopbackRange::default(), range(DEFAULT_RANGE));
        let default = LoopbackRange::default();
        assert_eq!(default.to_string(), "127.10.0.0/16");
        assert_eq!(default.first(), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(default.last(), Ipv4Addr::new(127, 10, 255, 254));
        assert_eq!(default.size(), 65_534);
        assert!(!default.contains(Ipv4Addr::new(127, 10, 0, 0)));
        assert!(!default.contains(Ipv4Addr::new(127, 10, 255, 255)));
        assert!(default.contains(Ipv4Addr::new(127, 10, 1, 0)));
    }

    #[test]
    fn slash_30_has_two_addresses() {
        let small = range("127.20.0.4/30");
        assert_eq!(small.size(), 2);
        assert_eq!(small.first(), Ipv4Addr::new(127, 20, 0, 5));
        assert_eq!(small.last(), Ipv4Addr::new(127, 20, 0, 6));
    }

    #[test]
    fn round_robin_wraps_and_restarts_outside_the_range() {
        let small = range("127.20.0.4/30");
        assert_eq!(small.after(None), small.first());
        assert_eq!(small.after(Some(small.first())), small.last());
        assert_eq!(small.after(Some(small.last())), small.first());
        assert_eq!(
            small.after(Some(Ipv4Addr::new(127, 9, 0, 1))),
            small.first()
        );
    }

    #[test]
    fn invalid_ranges_name_the_field() {
        for cidr in [
            "10.0.0.0/16",
            "127.10.0.0/8",
            "127.10.0.0/15",
            "127.10.0.0/31",
            "127.10.0.1/16",
            "127.0.0.0/16",
            "127.10.0.0",
            "127.10.0/16",
            "127.10.0.0/x",
            "::1/128",
        ] {
            match LoopbackRange::parse(cidr) {
                Err(NetworkError::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "range", "{cidr}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{cidr}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_bits_suggest_the_network() {
        let error = LoopbackRange::parse("127.10.3.1/16").unwrap_err();
        assert!(error.to_string().contains("127.10.0.0/16"), "{error}");
    }
}
