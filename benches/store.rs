//! The in-memory reference store at control-plane scale: write throughput (one writer, and 16
//! concurrent writers), reads of a 150,000-key prefix (whole, and the first page of 500), and
//! watch fan-out to 1,000 watchers.
//!
//! ```text
//! cargo bench --bench store
//! ```
//!
//! Besides criterion's report it prints `RESULT` lines. There is no baseline yet (etcd comes
//! with the etcd backend); these are the figures it will be compared with.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use futures_util::StreamExt;
use orchestra::core::store::{KeyRange, MemoryStore, Op, RangeRequest, Store, Txn, WatchRequest};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const SCALE: usize = 150_000;
const WATCHERS: usize = 1_000;
const PODS: &str = "/registry/pods/";

/// A value the size of a small pod object.
fn pod_value(i: usize) -> String {
    format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i:06}\",\
         \"namespace\":\"ns-{}\",\"labels\":{{\"app\":\"app-{}\"}}}},\"spec\":{{\"containers\":\
         [{{\"name\":\"web\",\"image\":\"web:1\",\"resources\":{{\"requests\":{{\"cpu\":\"100m\",\
         \"memory\":\"64Mi\"}}}}}}]}}}}",
        i % 100,
        i % 100
    )
}

fn pod_key(i: usize) -> String {
    format!("{PODS}ns-{}/pod-{i:06}", i % 100)
}

async fn put(store: &MemoryStore, i: usize) {
    store
        .txn(Txn::default().and_then([Op::put(pod_key(i), pod_value(i))]))
        .await
        .expect("put");
}

async fn filled(count: usize) -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..count {
        put(&store, i).await;
    }
    store
}

/// Puts per second by one writer over at least `budget`, compacting as it goes (as a control
/// plane would) so that history does not pile up.
async fn sequential_puts(budget: Duration) -> f64 {
    let store = MemoryStore::new();
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < budget {
        for _ in 0..1_000 {
            put(&store, done % SCALE).await;
            done += 1;
        }
        if done % 50_000 == 0 {
            let revision = store.current_revision().await.expect("revision");
            store.compact(revision).await.expect("compact");
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Puts per second by 16 concurrent writers (tasks of a multi-thread runtime), each to keys of
/// its own.
async fn concurrent_puts(writers: usize, each: usize) -> f64 {
    let store = MemoryStore::new();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..each {
                    put(&store, writer * each + n).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer");
    }
    (writers * each) as f64 / start.elapsed().as_secs_f64()
}

/// Watchers of the pod prefix, each counting the events it receives; the one that brings the
/// count to the awaited total wakes the waiter.
struct FanOut {
    delivered: Arc<AtomicU64>,
    target: Arc<AtomicU64>,
    reached: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FanOut {
    async fn open(store: &MemoryStore, watchers: usize) -> FanOut {
        let delivered = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let reached = Arc::new(Notify::new());
        let mut tasks = Vec::with_capacity(watchers);
        for _ in 0..watchers {
            let mut stream = store
                .watch(WatchRequest::new(KeyRange::Prefix(PODS.into())))
                .await
                .expect("watch");
            let (delivered, target, reached) = (
                Arc::clone(&delivered),
                Arc::clone(&target),
                Arc::clone(&reached),
            );
            tasks.push(tokio::spawn(async move {
                while let Some(response) = stream.next().await {
                    let events = response.expect("no compaction here").events.len() as u64;
                    let total = delivered.fetch_add(events, Ordering::AcqRel) + events;
                    if total >= target.load(Ordering::Acquire) {
                        reached.notify_one();
                    }
                }
            }));
        }
        FanOut {
            delivered,
            target,
            reached,
            tasks,
        }
    }

    /// Waits until the watchers have received `total` events in all.
    async fn wait_for(&self, total: u64) {
        self.target.store(total, Ordering::Release);
        while self.delivered.load(Ordering::Acquire) < total {
            // A notification stored before this wait wakes it at once; the timeout only guards
            // against a race between the store of the target and a watcher's check.
            let _ = tokio::time::timeout(Duration::from_millis(5), self.reached.notified()).await;
        }
    }

    fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// The time for one write to reach every watcher, and events delivered per second to the
/// watchers while a writer writes `writes` revisions back to back.
async fn watch_fan_out(watchers: usize, writes: usize) -> (Duration, f64) {
    let store = filled(1_000).await;
    let fan_out = FanOut::open(&store, watchers).await;
    let mut expected = 0;
    // One write at a time: the latency until every watcher has it.
    let rounds = 50;
    let start = Instant::now();
    for i in 0..rounds {
        put(&store, i).await;
        expected += watchers as u64;
        fan_out.wait_for(expected).await;
    }
    let latency = start.elapsed() / rounds as u32;
    // Back to back: the throughput of delivery.
    let start = Instant::now();
    for i in 0..writes {
        put(&store, i % 1_000).await;
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    expected += (watchers * writes) as u64;
    fan_out.wait_for(expected).await;
    let rate = (watchers * writes) as f64 / start.elapsed().as_secs_f64();
    fan_out.close();
    (latency, rate)
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn main() {
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let multi = multi_thread();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("store");
    group.sample_size(10);

    group.throughput(Throughput::Elements(1_000));
    group.bench_function("put/1000", |b| {
        b.iter_batched(
            MemoryStore::new,
            |store| {
                single.block_on(async {
                    for i in 0..1_000 {
                        put(&store, i).await;
                    }
                })
            },
            BatchSize::PerIteration,
        );
    });

    let big = single.block_on(filled(SCALE));
    group.throughput(Throughput::Elements(SCALE as u64));
    group.bench_function("range/150k", |b| {
        b.iter(|| {
            single
                .block_on(big.range(RangeRequest::prefix(PODS)))
                .expect("range")
        });
    });
    group.throughput(Throughput::Elements(500));
    group.bench_function("range/150k-limit-500", |b| {
        b.iter(|| {
            single
                .block_on(big.range(RangeRequest::prefix(PODS).limit(500)))
                .expect("range")
        });
    });

    group.throughput(Throughput::Elements(WATCHERS as u64));
    group.bench_function("watch/fan-out-1000/one-write", |b| {
        let store = multi.block_on(filled(1_000));
        let fan_out = multi.block_on(FanOut::open(&store, WATCHERS));
        let mut expected = 0;
        let mut i = 0;
        b.iter(|| {
            multi.block_on(async {
                put(&store, i % 1_000).await;
                i += 1;
                expected += WATCHERS as u64;
                fan_out.wait_for(expected).await;
            })
        });
        fan_out.close();
    });
    group.finish();
    criterion.final_summary();

    println!(
        "RESULT store_put {:.0} ops/s (one writer, 150,000 keys)",
        single.block_on(sequential_puts(Duration::from_secs(3)))
    );
    println!(
        "RESULT store_put_concurrent16 {:.0} ops/s (16 writers, {} threads)",
        multi.block_on(concurrent_puts(16, 10_000)),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        let all = single
            .block_on(big.range(RangeRequest::prefix(PODS)))
            .expect("range");
        assert_eq!(black_box(all).kvs.len(), SCALE);
    }
    println!(
        "RESULT store_range_150k {:.1} ms (all 150,000 keys of a prefix)",
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
    );
    let runs = 1_000;
    let start = Instant::now();
    for _ in 0..runs {
        let page = single
            .block_on(big.range(RangeRequest::prefix(PODS).limit(500)))
            .expect("range");
        assert_eq!((page.kvs.len(), page.count), (500, SCALE));
    }
    println!(
        "RESULT store_range_limit500 {:.0} us (first 500 of a 150,000-key prefix, with its count)",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(runs)
    );
    drop(big);

    let (latency, rate) = multi.block_on(watch_fan_out(WATCHERS, 2_000));
    println!(
        "RESULT store_watch_fanout_1000 {rate:.0} events/s \
         (1,000 watchers, 2,000 writes back to back)"
    );
    println!(
        "RESULT store_watch_fanout_1000_latency {:.0} us (one write to all 1,000 watchers)",
        latency.as_secs_f64() * 1e6
    );
}
