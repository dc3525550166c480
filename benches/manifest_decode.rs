//! How fast manifests are read: parsing YAML into documents, and the whole pipeline (strict
//! decoding, defaulting, validation) that `orchestra validate` and the API server run.
//!
//! ```text
//! cargo bench --bench manifest_decode
//! ```
//!
//! Besides criterion's report it prints `RESULT` lines: objects per second for the shared voting
//! app and for a stream of 1,000 deployments.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use orchestra::core::manifest;
use orchestra::core::scheme::Scheme;

fn voting_app() -> String {
    let mut paths: Vec<_> = std::fs::read_dir("../shared/fixtures/voting-app")
        .expect("the shared fixtures beside the checkout")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("a fixture"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn many_deployments(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels: {{app: app-{i}}}\n\
                 spec:\n  replicas: 3\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n\
                 \x20   spec:\n      containers:\n      - name: web\n        image: web:{i}\n        ports:\n        - {{name: http, containerPort: 8080}}\n\
                 \x20       resources:\n          requests: {{cpu: 100m, memory: 64Mi}}\n          limits: {{cpu: 500m, memory: 128Mi}}\n\
                 \x20       readinessProbe:\n          httpGet: {{path: /ready, port: http}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn decode_all(scheme: &Scheme, text: &str) -> usize {
    let mut objects = 0;
    for document in manifest::parse_all(text).expect("valid YAML") {
        black_box(scheme.decode(&document).expect("a valid object"));
        objects += 1;
    }
    objects
}

/// Objects per second over at least `budget` of repeated runs.
fn objects_per_second(scheme: &Scheme, text: &str, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut objects = 0;
    while start.elapsed() < budget {
        objects += decode_all(scheme, black_box(text));
    }
    objects as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let scheme = Scheme::default();
    let app = voting_app();
    let stream = many_deployments(1_000);
    assert_eq!(decode_all(&scheme, &app), 9);
    assert_eq!(decode_all(&scheme, &stream), 1_000);

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("manifest");
    group.throughput(Throughput::Elements(9));
    group.bench_function("parse/voting-app", |b| {
        b.iter(|| manifest::parse_all(black_box(&app)))
    });
    group.bench_function("decode/voting-app", |b| {
        b.iter(|| decode_all(&scheme, black_box(&app)))
    });
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(10);
    group.bench_function("decode/1000-deployments", |b| {
        b.iter(|| decode_all(&scheme, black_box(&stream)));
    });
    group.finish();
    criterion.final_summary();

    let budget = Duration::from_secs(2);
    println!(
        "RESULT manifest_decode_voting_app {:.0} objects/s",
        objects_per_second(&scheme, &app, budget)
    );
    println!(
        "RESULT manifest_decode_deployments {:.0} objects/s (stream of 1000)",
        objects_per_second(&scheme, &stream, budget)
    );
}
