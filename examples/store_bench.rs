//! The store backends side by side, on this machine, in one run: the embedded store, etcd (the
//! Debian `etcd-server`, through the etcd backend) and the in-memory store, plus a raw
//! `etcd-client` loop to measure the etcd backend's own overhead.
//!
//! ```text
//! cargo run --release --features etcd --example store_bench
//! ```
//!
//! It starts its own etcd member (Debian's `etcd`) with its data in the same temporary folder, on
//! the same disk, as the embedded store's (or uses the etcd at `ORCHESTRA_ETCD_ENDPOINTS`); both
//! sync every acknowledged write to disk (etcd's default; the embedded store's only mode).
//! Figures, one line each:
//!
//! ```text
//! RESULT <name> <value> <unit> vs etcd <value> ratio <x>
//! ```
//!
//! - `put_throughput_<n>clients`: puts per second with n concurrent clients (8-byte keys,
//!   256-byte values);
//! - `put_latency_p50`, `put_latency_p99`: one client, one put at a time;
//! - `range_10k`: reading a prefix of 10,000 keys;
//! - `watch_fanout_events_per_watcher`, `watch_fanout_delivery_p99`: 1,000 watchers of a prefix
//!   under a writer: events each watcher received per second (all checked gap-free), and the 99th
//!   percentile of the time from a write's acknowledgement to its delivery;
//! - `etcd_backend_overhead`: the etcd backend against a raw `etcd-client` loop doing the same puts.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use orchestra::core::store::{KeyRange, MemoryStore, RangeRequest, Store, WatchRequest};
use orchestra::store::embedded::{EmbeddedOptions, EmbeddedStore};
use orchestra::store::etcd::{EtcdOptions, EtcdStore, etcd_client};

const VALUE_BYTES: usize = 256;
const PUT_SECONDS: f64 = 3.0;
const WATCHERS: usize = 1_000;
const WATCH_EVENTS: usize = 3_000;

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_BYTES])
}

/// Puts per second with `clients` concurrent clients, each writing its own 8-byte keys.
async fn put_throughput<S: Store + Clone>(store: &S, clients: usize, run: &str) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(PUT_SECONDS);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let store = store.clone();
        let done = Arc::clone(&done);
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < deadline {
                // 8 bytes: a run letter, the client, the count.
                let key = format!("{run}{:03x}{:04x}", client % 4096, n % 65536);
                store.put(&key, value()).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let start = Instant::now();
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// One client, one put at a time: the 50th and 99th percentile latencies, in microseconds.
async fn put_latency<S: Store>(store: &S) -> Result<(f64, f64)> {
    let mut samples = Vec::new();
    for n in 0..2_000u32 {
        let key = format!("L{n:07}");
        let start = Instant::now();
        store.put(&key, value()).await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    Ok((at(0.50).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6))
}

/// Milliseconds to read a prefix of 10,000 keys (the median of 10 reads).
async fn range_10k<S: Store>(store: &S) -> Result<f64> {
    for n in 0..10_000u32 {
        store.put(&format!("R{n:07}"), value()).await?;
    }
    let mut samples = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let response = store.range(RangeRequest::prefix("R")).await?;
        samples.push(start.elapsed());
        if response.kvs.len() != 10_000 {
            bail!("the range read {} keys", response.kvs.len());
        }
    }
    samples.sort();
    Ok(samples[samples.len() / 2].as_secs_f64() * 1e3)
}

/// 1,000 watchers of a prefix under one writer: events per second each watcher received (every
/// watcher checked gap-free), and the p99 delivery latency in milliseconds.
async fn watch_fanout<S: Store + Clone>(store: &S) -> Result<(f64, f64)> {
    let base = Instant::now();
    let start_revision = store.current_revision().await? + 1;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut events = store
            .watch(WatchRequest::new(KeyRange::Prefix("W".into())).from(start_revision))
            .await?;
        watchers.push(tokio::spawn(async move {
            let mut received = 0;
            let mut last_revision = start_revision - 1;
            let mut latencies = Vec::with_capacity(WATCH_EVENTS);
            let mut first = None;
            while received < WATCH_EVENTS {
                let response = events.next().await.context("the watch ended")??;
                for event in response.events {
                    if event.kv.mod_revision != last_revision + 1 {
                        bail!("a gap: {} after {last_revision}", event.kv.mod_revision);
                    }
                    last_revision = event.kv.mod_revision;
                    let sent = u64::from_le_bytes(event.kv.value[..8].try_into()?);
                    let now = base.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(sent));
                    first.get_or_insert_with(Instant::now);
                    received += 1;
                }
            }
            let seconds = first.map_or(1.0, |f| f.elapsed().as_secs_f64().max(1e-9));
            anyhow::Ok((received as f64 / seconds, latencies))
        }));
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..WATCH_EVENTS {
                let mut payload = (base.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
                payload.resize(VALUE_BYTES, b'w');
                store
                    .put(&format!("W{:07}", n % 1000), Bytes::from(payload))
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    writer.await??;
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for watcher in watchers {
        let (rate, mut samples) = watcher.await??;
        rates.push(rate);
        latencies.append(&mut samples);
    }
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() as f64 * 0.99) as usize % latencies.len()];
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((slowest, p99 as f64 / 1e6))
}

/// The same puts as `put_throughput`, through `etcd-client` directly.
async fn raw_etcd_throughput(endpoints: &[String], clients: usize) -> Result<f64> {
    let client = etcd_client::Client::connect(endpoints, None).await?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(PUT_SECONDS);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut kv = client.kv_client();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < deadline {
                let key = format!("/bench-raw/X{:03x}{:04x}", c % 4096, n % 65536);
                kv.put(key, vec![b'v'; VALUE_BYTES], None).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let start = Instant::now();
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn result(name: &str, ours: f64, etcd: f64, unit: &str, higher_is_better: bool) {
    let ratio = if higher_is_better {
        ours / etcd
    } else {
        etcd / ours
    };
    println!("RESULT {name} {ours:.1} {unit} vs etcd {etcd:.1} ratio {ratio:.2}");
}

/// The etcd endpoints: from the environment, or a member started here with its data on the same
/// disk as the embedded store's (stopped when the guard is dropped).
fn etcd_endpoints(data: &std::path::Path) -> Result<(Vec<String>, Option<EtcdGuard>)> {
    if let Ok(endpoints) = std::env::var("ORCHESTRA_ETCD_ENDPOINTS") {
        return Ok((endpoints.split(',').map(str::to_owned).collect(), None));
    }
    let free_port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args([
            "--name",
            "bench",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("bench={peer_url}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting etcd (Debian's etcd-server)")?;
    Ok((vec![client_url], Some(EtcdGuard(child))))
}

/// An etcd member started by the benchmark.
struct EtcdGuard(std::process::Child);

impl Drop for EtcdGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // Both durable stores on the same disk.
    let dir = tempfile::tempdir_in(std::env::temp_dir())?;
    let (endpoints, _guard) = etcd_endpoints(&dir.path().join("etcd"))?;
    let embedded = EmbeddedStore::open(
        dir.path().join("embedded"),
        EmbeddedOptions {
            retention: None,
            ..EmbeddedOptions::default()
        },
    )?;
    let memory = MemoryStore::new();
    // A member just started needs a moment before it answers.
    let mut attempts = 0;
    let etcd = loop {
        attempts += 1;
        match EtcdStore::connect(
            &endpoints,
            EtcdOptions::new().key_prefix(format!("/bench-{}/", std::process::id())),
        )
        .await
        {
            Ok(store) => break store,
            Err(_) if attempts < 50 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => return Err(error).context("connecting to etcd"),
        }
    };

    for clients in [1, 16, 256] {
        let run = ["A", "B", "C"][[1, 16, 256].iter().position(|&c| c == clients).unwrap_or(0)];
        let ours = put_throughput(&embedded, clients, run).await?;
        let theirs = put_throughput(&etcd, clients, run).await?;
        let reference = put_throughput(&memory, clients, run).await?;
        result(
            &format!("put_throughput_{clients}clients"),
            ours,
            theirs,
            "puts/s",
            true,
        );
        println!("RESULT memory_put_throughput_{clients}clients {reference:.1} puts/s");
    }
    // The etcd backend's own overhead: the same puts through it and through etcd-client directly,
    // alternating, before the watch test loads etcd.
    let (mut backend, mut raw) = (Vec::new(), Vec::new());
    for round in 0..4 {
        backend.push(put_throughput(&etcd, 16, ["D", "E", "F", "G"][round]).await?);
        raw.push(raw_etcd_throughput(&endpoints, 16).await?);
    }
    backend.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let (backend, raw) = ((backend[1] + backend[2]) / 2.0, (raw[1] + raw[2]) / 2.0);
    println!(
        "RESULT etcd_backend_overhead {backend:.1} puts/s vs raw etcd-client {raw:.1} ratio {:.2}",
        backend / raw
    );
    let (ours_p50, ours_p99) = put_latency(&embedded).await?;
    let (etcd_p50, etcd_p99) = put_latency(&etcd).await?;
    result("put_latency_p50", ours_p50, etcd_p50, "us", false);
    result("put_latency_p99", ours_p99, etcd_p99, "us", false);
    let ours = range_10k(&embedded).await?;
    let theirs = range_10k(&etcd).await?;
    let reference = range_10k(&memory).await?;
    result("range_10k", ours, theirs, "ms", false);
    println!("RESULT memory_range_10k {reference:.2} ms");
    let (ours_rate, ours_p99) = watch_fanout(&embedded).await?;
    let (etcd_rate, etcd_p99) = watch_fanout(&etcd).await?;
    result(
        "watch_fanout_events_per_watcher",
        ours_rate,
        etcd_rate,
        "events/s",
        true,
    );
    result("watch_fanout_delivery_p99", ours_p99, etcd_p99, "ms", false);
    Ok(())
}
