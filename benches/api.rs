//! The typed API over the in-memory store at control-plane scale: creating and listing 150,000
//! pods through `Api<Pod>` (defaulting, validation, admission, optimistic writes included).
//!
//! ```text
//! cargo bench --bench api
//! ```
//!
//! Prints criterion's report for small batches and `RESULT` lines for the full 150,000-pod run.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use orchestra::core::api::{Api, Client, ListParams, PostParams};
use orchestra::core::k8s::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use orchestra::core::k8s::apimachinery::pkg::api::resource::Quantity;
use orchestra::core::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra::core::store::MemoryStore;

const SCALE: usize = 150_000;

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i:06}")),
            labels: Some([("app".to_owned(), format!("app-{}", i % 100))].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("web:1".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        [
                            ("cpu".to_owned(), Quantity("100m".into())),
                            ("memory".to_owned(), Quantity("64Mi".into())),
                        ]
                        .into(),
                    ),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn api() -> Api<Pod> {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.expect("bootstrap");
    Api::namespaced(client, "default")
}

async fn create_all(api: &Api<Pod>, range: std::ops::Range<usize>) {
    for i in range {
        api.create(&PostParams::default(), &pod(i))
            .await
            .expect("create");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("api");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("create/1000-pods", |b| {
        b.iter_batched(
            || runtime.block_on(api()),
            |api| runtime.block_on(create_all(&api, 0..1_000)),
            BatchSize::PerIteration,
        );
    });
    let listed = runtime.block_on(async {
        let api = api().await;
        create_all(&api, 0..1_000).await;
        api
    });
    group.bench_function("list/1000-pods", |b| {
        b.iter(|| {
            runtime
                .block_on(listed.list(&ListParams::default()))
                .expect("list")
        });
    });
    group.finish();
    criterion.final_summary();

    runtime.block_on(async {
        let api = api().await;
        let start = Instant::now();
        create_all(&api, 0..SCALE).await;
        let created = start.elapsed();
        println!(
            "RESULT api_create_150k_pods {:.0} pods/s ({:.1} s for {SCALE})",
            SCALE as f64 / created.as_secs_f64(),
            created.as_secs_f64()
        );
        let start = Instant::now();
        let all = black_box(api.list(&ListParams::default()).await.expect("list"));
        let listed = start.elapsed();
        assert_eq!(all.items.len(), SCALE);
        println!(
            "RESULT api_list_150k_pods {:.0} ms",
            listed.as_secs_f64() * 1000.0
        );
        let start = Instant::now();
        let page = black_box(
            api.list(&ListParams::default().limit(500))
                .await
                .expect("list"),
        );
        assert_eq!(page.items.len(), 500);
        println!(
            "RESULT api_list_150k_pods_first_page_500 {:.2} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
        let start = Instant::now();
        let selected = black_box(
            api.list(&ListParams::default().labels("app=app-7"))
                .await
                .expect("list"),
        );
        assert_eq!(selected.items.len(), SCALE / 100);
        println!(
            "RESULT api_list_150k_pods_label_selector {:.0} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    });
}
