//! Engine cost: a realistic migrated Deployment (~5 KB) and a Namespace, against tables of
//! 10, 1,000 and 100,000 entries; and building a 100,000-entry table.
//! Run: `cargo bench --bench rewrite` (figures in BENCHMARKS.md).

use std::hint::black_box;

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::mapping::{parse_text, Origin, Table};
use rancher_remap::rewrite::{decide_object, MutateSettings};
use support::{deployment, mappings, namespace};

fn bench_rewrite(c: &mut Criterion) {
    // As the `rewrite` command decides: every object counts as migrated.
    let settings = MutateSettings::default();
    let dep = deployment();
    let ns = namespace();
    eprintln!("deployment JSON size: {} bytes", dep.to_string().len());
    let mut group = c.benchmark_group("rewrite");
    for n in [10usize, 1_000, 100_000] {
        let m = Mappings::from_text(&mappings(n)).unwrap();
        let decided = decide_object(&dep, false, true, &m, &settings);
        assert_eq!(decided.rewrites().count(), 10);
        group.bench_with_input(BenchmarkId::new("deployment", n), &m, |b, m| {
            b.iter(|| decide_object(black_box(&dep), false, true, m, &settings).patch)
        });
        group.bench_with_input(BenchmarkId::new("namespace", n), &m, |b, m| {
            b.iter(|| decide_object(black_box(&ns), false, true, m, &settings).patch)
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let text = mappings(100_000);
    let mut group = c.benchmark_group("table");
    group.sample_size(10);
    group.bench_function("parse_100000", |b| {
        b.iter(|| parse_text(black_box(&text), &Origin::Text))
    });
    group.bench_function("build_100000", |b| {
        b.iter(|| Table::build(parse_text(black_box(&text), &Origin::Text)).unwrap())
    });
    // A mapping ConfigMap of about 1 MiB (40,000 entries in both forms over four keys), as the
    // watcher hands it over: typed, then parsed, checked and built.
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "m", "namespace": "rancher-remap"},
        "data": (0..4).map(|k| (format!("ns.cluster{k}"), (0..5_000).map(|i| {
            let i = k * 5_000 + i;
            format!("p-s{i:05}=p-d{i:05}\nc-src:p-s{i:05}=c-dst:p-d{i:05}\n")
        }).collect::<String>())).collect::<std::collections::BTreeMap<_, _>>()
    }))
    .unwrap();
    let bytes: usize = cm.data.as_ref().unwrap().values().map(String::len).sum();
    eprintln!("mapping ConfigMap data: {bytes} bytes");
    group.bench_function("configmap_40000", |b| {
        b.iter(|| rancher_remap::source::mappings_of(black_box(&cm)).unwrap())
    });
    group.finish();
}

/// The whole admission answer without the network: the webhook's path (the walk over the
/// bytes, the answer written once) and the floor (check the JSON, echo the uid), on the same
/// 5 KB migrated Deployment review.
fn bench_review(c: &mut Criterion) {
    use rancher_remap::mapping::objects::Mappings;
    use rancher_remap::rewrite::MutateSettings;
    let body = support::review_body();
    let mappings = Mappings::from_text(&mappings(1_000)).unwrap();
    let settings = MutateSettings::default();
    let mut group = c.benchmark_group("review");
    group.bench_function("floor", |b| {
        b.iter(|| support::floor_answer(black_box(&body)).unwrap())
    });
    group.bench_function("webhook", |b| {
        b.iter(|| webhook(black_box(&body), &mappings, &settings))
    });
    group.finish();
}

/// `/mutate` as the server answers it.
fn webhook(
    body: &[u8],
    mappings: &rancher_remap::mapping::objects::Mappings,
    settings: &rancher_remap::rewrite::MutateSettings,
) -> Vec<u8> {
    use rancher_remap::server::mutate;
    let mut req = mutate::decode(body, &mappings.table).unwrap();
    mutate::answer(&mut req, mappings, settings).body
}

/// Cost curves: the webhook's answer beside the floor's as the object grows from 1 KB to 1 MB,
/// and the webhook's as the table grows from 10 to 100,000 entries.
fn bench_cost(c: &mut Criterion) {
    use criterion::Throughput;
    use rancher_remap::mapping::objects::Mappings;
    use rancher_remap::rewrite::MutateSettings;
    let settings = MutateSettings::default();

    let mappings_1k = Mappings::from_text(&mappings(1_000)).unwrap();
    let mut group = c.benchmark_group("cost_object");
    for target in [1_000, 10_000, 100_000, 1_000_000] {
        let body = support::review_of_size(target);
        assert!(webhook(&body, &mappings_1k, &settings)
            .windows(9)
            .any(|w| w == b"JSONPatch"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("webhook", body.len()), &body, |b, body| {
            b.iter(|| webhook(black_box(body), &mappings_1k, &settings))
        });
        group.bench_with_input(BenchmarkId::new("floor", body.len()), &body, |b, body| {
            b.iter(|| support::floor_answer(black_box(body)).unwrap())
        });
    }
    group.finish();

    let body = support::review_body();
    let mut group = c.benchmark_group("cost_table");
    for n in [10, 100, 1_000, 10_000, 100_000] {
        let m = Mappings::from_text(&mappings(n)).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &m, |b, m| {
            b.iter(|| webhook(black_box(&body), m, &settings))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_rewrite,
    bench_build,
    bench_review,
    bench_cost
);
criterion_main!(benches);
