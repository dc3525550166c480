//! Crash safety of the embedded store: a child process writes with many concurrent writers and
//! reports every acknowledged write on its standard output; the test kills it with SIGKILL at
//! random moments, reopens the store, and checks that every acknowledged write is there, that the
//! revision never goes backwards, and that the store opens cleanly every time.
//!
//! This file has its own `main` (`harness = false`): run without arguments it is the test; run as
//! `crash child <folder>` it is the writer.
//!
//! `ORCHESTRA_CRASH_KILLS` sets the number of kills (50 by default); `ORCHESTRA_CRASH_SEED` the
//! seed of the kill times.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use orchestra_core::store::{Compare, Op, Store, Txn};
use orchestra_store::embedded::{EmbeddedOptions, EmbeddedStore};

const WRITERS: usize = 32;

/// Small checkpoints, so that kills also land in checkpoints and segment switches.
fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        checkpoint_bytes: 32 * 1024,
        retention: Some(5_000),
    }
}

/// The writer: each task writes its own keys (`/w/<task>/<n>`, value `<n>`), and every tenth
/// write also bumps a shared counter with a compare-and-swap; after each acknowledged write it
/// prints `<task> <n> <revision>`.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir, options()).expect("the store opens");
        // Continue each task's numbering after what is already stored.
        let mut tasks = Vec::new();
        for task in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let prefix = format!("/w/{task:02}/");
                let start = store
                    .range(orchestra_core::store::RangeRequest::prefix(&prefix))
                    .await
                    .expect("a read")
                    .count;
                for n in start.. {
                    let key = format!("{prefix}{n:08}");
                    let mut ops = vec![Op::put(&key, Bytes::from(n.to_string()))];
                    let mut compares = Vec::new();
                    if n % 10 == 0 {
                        let counter = store.get("/counter").await.expect("a read");
                        let (revision, value) = counter
                            .map(|kv| {
                                let value: u64 =
                                    String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
                                (kv.mod_revision, value)
                            })
                            .unwrap_or((0, 0));
                        compares.push(Compare::mod_revision("/counter", revision));
                        ops.push(Op::put("/counter", Bytes::from((value + 1).to_string())));
                    }
                    let response = store
                        .txn(
                            Txn::when(compares)
                                .and_then(ops.clone())
                                .or_else([ops[0].clone()]),
                        )
                        .await
                        .expect("a write");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{task} {n} {}", response.revision);
                    let _ = out.flush();
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// A small deterministic generator for the kill times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .arg("child")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the writer starts")
}

fn parent() {
    let kills: usize = std::env::var("ORCHESTRA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("ORCHESTRA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let mut rng = Rng(seed | 1);
    let root = tempfile::Builder::new()
        .prefix("crash-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary folder");
    let dir = root.path().join("store");
    // Every acknowledged write: (task, n) → its revision.
    let mut acknowledged: BTreeMap<(usize, u64), i64> = BTreeMap::new();
    let mut last_revision = 0;
    let started = Instant::now();
    for round in 0..kills {
        let mut child = spawn_child(&dir);
        let stdout = child.stdout.take().expect("the child's output");
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if lines.send(line).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        // Kill at a random moment after the writer has started acknowledging writes.
        let delay = Duration::from_millis(20 + rng.next() % 250);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut first_ack = None;
        loop {
            match received.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => record(&line, &mut acknowledged, &mut last_revision),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "round {round}: the writer died on its own: {:?}",
                        child.wait()
                    )
                }
            }
            if first_ack.is_none() && !acknowledged.is_empty() {
                first_ack = Some(Instant::now());
            }
            if first_ack.is_some_and(|at| at.elapsed() >= delay) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the writer acknowledges nothing"
            );
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // Whatever the child printed before it died is acknowledged too.
        let _ = reader.join();
        for line in received.try_iter() {
            record(&line, &mut acknowledged, &mut last_revision);
        }
        verify(&dir, round, &acknowledged, last_revision);
    }
    println!(
        "crash: {kills} kills, {} acknowledged writes checked, {:.1} s",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
}

fn record(line: &str, acknowledged: &mut BTreeMap<(usize, u64), i64>, last: &mut i64) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [task, n, revision] = fields[..] else {
        // A line cut short by the kill was never a whole acknowledgement.
        return;
    };
    let (Ok(task), Ok(n), Ok(revision)) = (task.parse(), n.parse(), revision.parse()) else {
        return;
    };
    acknowledged.insert((task, n), revision);
    *last = (*last).max(revision);
}

/// Reopens the store and checks every acknowledged write.
fn verify(dir: &Path, round: usize, acknowledged: &BTreeMap<(usize, u64), i64>, last: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir, options())
            .unwrap_or_else(|error| panic!("round {round}: the store does not open: {error}"));
        let revision = store.current_revision().await.expect("the revision");
        assert!(
            revision >= last,
            "round {round}: the store is at revision {revision}, an acknowledged write was at {last}"
        );
        let stored = store
            .range(orchestra_core::store::RangeRequest::prefix("/w/"))
            .await
            .expect("a read");
        let values: BTreeMap<&str, &Bytes> =
            stored.kvs.iter().map(|kv| (kv.key.as_str(), &kv.value)).collect();
        for (task, n) in acknowledged.keys() {
            let key = format!("/w/{task:02}/{n:08}");
            match values.get(key.as_str()) {
                Some(value) => assert_eq!(
                    value.as_ref(),
                    n.to_string().as_bytes(),
                    "round {round}: {key} has the wrong value"
                ),
                None => panic!("round {round}: the acknowledged write {key} is lost"),
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => child(Path::new(&args[2])),
        // `cargo test` passes its own flags (e.g. `--quiet`); a filter that excludes `crash`
        // skips the run, as it would a harnessed test.
        _ => {
            let filters: Vec<&String> = args
                .iter()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect();
            if filters.is_empty() || filters.iter().any(|f| "crash".contains(f.as_str())) {
                parent();
            }
        }
    }
}
