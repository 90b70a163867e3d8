//! Engine cost: a realistic migrated Deployment (~5 KB) and a Namespace, against tables of
//! 10, 1,000 and 100,000 entries; and building a 100,000-entry table.
//! Run: `cargo bench --bench rewrite` (figures in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};

use rancher_remap::mapping::{parse_text, table_from_text, Origin, Table};
use rancher_remap::rewrite::{rewrite, Options, UnmappedPolicy};

const KEY: &str = "field.cattle.io/projectId";

/// `n` entries in both forms; the objects below use entry 0 and 1.
fn mappings(n: usize) -> String {
    (0..n / 2)
        .map(|i| format!("p-s{i}=p-d{i},c-src:p-s{i}=c-dst:p-d{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn selector() -> Value {
    json!({"matchLabels": {KEY: "p-s0"}, "matchExpressions": [{"key": KEY, "operator": "In", "values": ["p-s0", "p-s1"]}]})
}

fn container(name: &str) -> Value {
    json!({
        "name": name, "image": format!("registry.example.com/shop/{name}:1.27.3"),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--port=8080", "--log-level=info", "--metrics"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "LOG_FORMAT", "value": "json"}, {"name": "DB_HOST", "value": "db.shop.svc.cluster.local"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "data", "mountPath": "/var/lib/app"}],
        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
    })
}

/// A Deployment as Stork writes it on the destination.
pub fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop",
            "labels": {"app": "web", "app.kubernetes.io/part-of": "shop", KEY: "p-s0"},
            "annotations": {KEY: "c-src:p-s0", "stork.libopenstorage.org/migrated": "true", "stork.libopenstorage.org/migrationName": "shop-migration", "stork.libopenstorage.org/migrationNamespace": "migrationnamespace", "deployment.kubernetes.io/revision": "4"}
        },
        "spec": {
            "replicas": 3, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web", KEY: "p-s0"}, "annotations": {"prometheus.io/scrape": "true", KEY: "c-src:p-s0"}},
                "spec": {
                    "serviceAccountName": "web",
                    "containers": [container("web"), container("sidecar"), container("exporter")],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config"}}, {"name": "data", "emptyDir": {}}],
                    "affinity": {
                        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone", "namespaceSelector": selector()}}]},
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname", "namespaceSelector": selector()}]}
                    }
                }
            }
        }
    })
}

fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {KEY: "p-s0", "kubernetes.io/metadata.name": "shop"}, "annotations": {KEY: "c-src:p-s0", "cattle.io/status": "{}"}}})
}

fn bench_rewrite(c: &mut Criterion) {
    let opts = Options {
        unmapped: UnmappedPolicy::Drop,
        migrated: true,
    };
    let dep = deployment();
    let ns = namespace();
    eprintln!("deployment JSON size: {} bytes", dep.to_string().len());
    let mut group = c.benchmark_group("rewrite");
    for n in [10usize, 1_000, 100_000] {
        let table: Table = table_from_text(&mappings(n)).unwrap();
        assert_eq!(rewrite(&dep, &table, &opts).rewrites.len(), 10);
        group.bench_with_input(BenchmarkId::new("deployment", n), &table, |b, t| {
            b.iter(|| rewrite(black_box(&dep), t, &opts))
        });
        group.bench_with_input(BenchmarkId::new("namespace", n), &table, |b, t| {
            b.iter(|| rewrite(black_box(&ns), t, &opts))
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
    group.finish();
}

criterion_group!(benches, bench_rewrite, bench_build);
criterion_main!(benches);
