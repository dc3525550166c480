//! The etcd store on a three-member etcd cluster (cargo feature `etcd`): when the leader is
//! killed (SIGKILL), or hangs (SIGSTOP), while a writer keeps writing through the store, writes go
//! on after a brief hiccup (one request time-out at most), no acknowledged write is lost, and a
//! watch opened before the fault delivers every acknowledged write, in order.
//!
//! Each test starts its own cluster on loopback ports with `scripts/etcd.sh start cluster` (and
//! stops it at the end; the tests take turns). When that cannot be done it fails under `CI=true`,
//! and otherwise prints a notice and passes without running.
#![cfg(feature = "etcd")]

use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use orchestra_core::store::{KeyRange, RangeRequest, Revision, Store, StoreError, WatchRequest};
use orchestra_store::etcd::{EtcdOptions, EtcdStore};
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, timeout};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/etcd.sh");

/// How long the writer writes before the fault, and after it.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_secs(4);

/// The longest a write may take, retries included, before the test gives up on fail-over.
const HICCUP: Duration = Duration::from_secs(10);

/// The store's request time-out: the longest a request to a hung member waits.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The tests' turns on the one cluster instance of scripts/etcd.sh.
static TURN: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Runs `scripts/etcd.sh` with `args`: its output, or why it failed.
fn script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run scripts/etcd.sh: {error}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`scripts/etcd.sh {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The test's cluster, stopped (and its data deleted) when dropped, even after a failure.
struct Cluster {
    endpoints: Vec<String>,
}

impl Cluster {
    /// A fresh three-member cluster, or `None` (after a notice) when there is no etcd and no CI.
    fn start() -> Option<Cluster> {
        let started = script(&["stop", "cluster"]).and_then(|_| script(&["start", "cluster"]));
        match started {
            Ok(list) => Some(Cluster {
                endpoints: list.split(',').map(str::to_owned).collect(),
            }),
            Err(why) if ci() => panic!(
                "a three-member etcd cluster is needed for this test and CI=true: {why} \
                 (install etcd-server; scripts/test.sh does)"
            ),
            Err(why) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: etcd cluster test not run: {why} (install etcd-server; CI=true makes \
                     this a failure)"
                );
                None
            }
        }
    }

    /// The process id of member `index` (0-based, in the order of the endpoints).
    fn pid(&self, index: usize) -> String {
        script(&["pid", "cluster", &(index + 1).to_string()])
            .unwrap_or_else(|why| panic!("member {} of the cluster: {why}", index + 1))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["stop", "cluster"]);
    }
}

/// The index of the cluster's leader among the endpoints.
async fn leader(endpoints: &[String]) -> usize {
    for (index, endpoint) in endpoints.iter().enumerate() {
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap_or_else(|error| panic!("connect to {endpoint}: {error}"));
        let status = client
            .status()
            .await
            .unwrap_or_else(|error| panic!("status of {endpoint}: {error}"));
        let member = status.header().map(|header| header.member_id());
        if member == Some(status.leader()) {
            return index;
        }
    }
    panic!("no member of {endpoints:?} says it leads");
}

/// One acknowledged write.
#[derive(Clone, Debug)]
struct Acked {
    key: String,
    value: Bytes,
    revision: Revision,
    at: Instant,
}

/// SIGKILL: the member's connections close at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_killed_leader() {
    let _turn = TURN.lock().await;
    lose_the_leader("-KILL").await;
}

/// SIGSTOP: the member's connections stay open and nothing answers on them; the store notices
/// by time-outs (requests) and HTTP/2 keep-alive pings (the watch's stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_hung_leader() {
    let _turn = TURN.lock().await;
    lose_the_leader("-STOP").await;
}

/// Writes through the store on a fresh cluster, sends `signal` to the leader, writes on, and
/// checks what the module documentation says.
async fn lose_the_leader(signal: &str) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let prefix = format!("/orchestra-cluster-test/{}/", std::process::id());
    // Keep-alive pings as often as etcd takes them (every 5 s at most), so that the watch's
    // stream to a hung member is given up within seconds.
    let options = EtcdOptions::new()
        .key_prefix(prefix)
        .request_timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .keep_alive(Duration::from_secs(6), Duration::from_secs(2));
    let store = Arc::new(
        EtcdStore::connect(&cluster.endpoints, options.clone())
            .await
            .unwrap_or_else(|error| panic!("connect to {:?}: {error}", cluster.endpoints)),
    );
    let mut watch = store
        .watch(WatchRequest::new(KeyRange::Prefix("w/".into())))
        .await
        .expect("a watch of the writer's keys");

    // The writer: one put at a time, each retried while the store is unavailable.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut acked: Vec<Acked> = Vec::new();
            let mut retries = 0_usize;
            let mut index = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w/{index:06}");
                let value = Bytes::from(format!("value {index}"));
                let started = Instant::now();
                let revision = loop {
                    match store.put(&key, value.clone()).await {
                        Ok(revision) => break revision,
                        Err(StoreError::Unavailable(why)) => {
                            assert!(
                                started.elapsed() < HICCUP,
                                "write {index} failed for {HICCUP:?}: {why}"
                            );
                            retries += 1;
                            sleep(Duration::from_millis(20)).await;
                        }
                        Err(other) => panic!("write {index}: {other:?}"),
                    }
                };
                acked.push(Acked {
                    key,
                    value,
                    revision,
                    at: Instant::now(),
                });
                index += 1;
            }
            (acked, retries)
        })
    };

    sleep(BEFORE).await;
    let dead = leader(&cluster.endpoints).await;
    let pid = cluster.pid(dead);
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
    let faulted = Instant::now();
    sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, retries) = writer.await.expect("the writer panicked");

    // Writes went on after the fault, after at most a brief hiccup.
    let before = acked.iter().filter(|write| write.at < faulted).count();
    let after = acked.len() - before;
    let mut longest = Duration::ZERO;
    let mut last = faulted;
    for write in acked.iter().filter(|write| write.at >= faulted) {
        longest = longest.max(write.at - last);
        last = write.at;
    }
    println!(
        "kill {signal}: {} acknowledged writes: {before} before signalling the leader (member \
         {}), {after} after; {retries} retries; longest wait for an acknowledgement after the \
         signal: {longest:?}",
        acked.len(),
        dead + 1
    );
    assert!(before > 10, "writes before the fault: {before}");
    assert!(after > 10, "writes after the fault: {after}");
    assert!(
        longest < REQUEST_TIMEOUT + Duration::from_secs(2),
        "a hiccup of {longest:?}: more than one request time-out"
    );
    for pair in acked.windows(2) {
        assert!(
            pair[0].revision < pair[1].revision,
            "acknowledged revisions in order: {pair:?}"
        );
    }

    // Every acknowledged write is there, read through the store from the surviving members.
    let survivors: Vec<String> = cluster
        .endpoints
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != dead)
        .map(|(_, endpoint)| endpoint.clone())
        .collect();
    let reader = EtcdStore::connect(&survivors, options)
        .await
        .unwrap_or_else(|error| panic!("connect to the survivors {survivors:?}: {error}"));
    let stored = reader
        .range(RangeRequest::prefix("w/"))
        .await
        .expect("read every written key");
    assert_eq!(
        stored.kvs.len(),
        acked.len(),
        "one key per acknowledged write"
    );
    for (kv, write) in stored.kvs.iter().zip(&acked) {
        assert_eq!(
            (&kv.key, &kv.value, kv.mod_revision),
            (&write.key, &write.value, write.revision),
            "an acknowledged write, as stored"
        );
    }

    // The watch opened before the fault saw every acknowledged write, in order, whatever member
    // served it.
    let last_revision = acked.last().map_or(0, |write| write.revision);
    let mut seen: Vec<(String, Revision)> = Vec::new();
    while seen
        .last()
        .is_none_or(|&(_, revision)| revision < last_revision)
    {
        let response = timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("the watch delivers within 20 s")
            .expect("the watch goes on")
            .expect("the watch survives the fault");
        seen.extend(
            response
                .events
                .into_iter()
                .map(|event| (event.kv.key, event.kv.mod_revision)),
        );
    }
    for pair in seen.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "watch events in order: {pair:?}");
    }
    let mut events = seen.iter().peekable();
    for write in &acked {
        // A write retried after a time-out may have been applied twice: skip what came between.
        while events
            .peek()
            .is_some_and(|&&(_, revision)| revision < write.revision)
        {
            events.next();
        }
        assert_eq!(
            events.next(),
            Some(&(write.key.clone(), write.revision)),
            "the watch delivered the acknowledged write"
        );
    }
    drop(cluster);
}
