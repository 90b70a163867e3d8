//! `rancher-remap audit` of a large cluster (issue 16): the real binary, through a kubeconfig,
//! against the in-process fake API server (tests/it/fake_api.rs) holding N objects of 5 kinds
//! (Deployment, ConfigMap, Secret, NetworkPolicy and a custom resource) in 20 namespaces, all
//! migrated, half of them carrying source project IDs. Reports wall time and the audit
//! process's peak RSS (`VmHWM`, polled from /proc while it runs) for several page sizes and
//! cluster sizes, then one `--fix`. Target: 10,000 objects in under 10 s, memory bounded by the
//! page size (not the cluster size).
//!
//! Run: `cargo bench --bench audit` (or `make audit-bench`). Knobs: AUDIT_OBJECTS (default
//! 10000); AUDIT_ARGS, more arguments for every audit run, split on spaces (e.g.
//! `--include-secrets`, to audit the Secrets a default audit leaves out). Loopback only; every
//! audit process is waited for.

#[path = "support/net.rs"]
mod net;
mod support;

#[path = "../tests/it/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

use std::process::Command;
use std::time::{Duration, Instant};

use fake_api::{FakeApi, ResourceType};
use net::{env_or, status_kib};
use serde_json::{json, Value};

const KEY: &str = "field.cattle.io/projectId";
const MIGRATED: &str = "stork.libopenstorage.org/migrated";
const KINDS: usize = 5;
const NAMESPACES: usize = 20;
/// Entries in the table (the objects use the first 50 source projects).
const TABLE: usize = 1000;

/// Object `i` of `n`: kind `i % 5`; source project IDs when `i / 5` is even, else destination
/// ones (already mapped, nothing to do).
fn object(i: usize) -> Value {
    let ns = format!("ns-{:02}", i % NAMESPACES);
    let name = format!("obj-{i:06}");
    let k = (i / KINDS) % 50;
    let (p, c) = if (i / KINDS).is_multiple_of(2) {
        (format!("p-s{k}"), format!("c-src:p-s{k}"))
    } else {
        (format!("p-d{k}"), format!("c-dst:p-d{k}"))
    };
    let metadata = json!({"name": name, "namespace": ns, "labels": {KEY: p, "app": name},
        "annotations": {KEY: c, MIGRATED: "true", "stork.libopenstorage.org/migrationName": "m1"}});
    match i % KINDS {
        0 => {
            // The benches' realistic migrated Deployment (about 4.5 KB).
            let mut d = support::deployment();
            d["metadata"] = metadata;
            d["spec"]["template"]["metadata"]["labels"][KEY] = json!(p);
            d["spec"]["template"]["metadata"]["annotations"][KEY] = json!(c);
            d
        }
        1 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": {"app.properties": "x=1\n".repeat(200)}}),
        2 => json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": {"token": "dG9rZW4=".repeat(64)}}),
        3 => {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
            "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {KEY: p}}}]}]}})
        }
        _ => json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata,
            "spec": {"size": 3, "template": {"metadata": {"labels": {KEY: p}}}}}),
    }
}

async fn cluster(n: usize) -> FakeApi {
    let fake = FakeApi::start().await;
    fake.add_type(ResourceType::custom(
        "example.com",
        "v1",
        "widgets",
        "Widget",
        true,
    ));
    for i in 0..NAMESPACES {
        fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{i:02}")}}));
    }
    fake.put_all((0..n).map(object));
    fake
}

struct Run {
    took: Duration,
    peak_kib: u64,
    code: Option<i32>,
    findings: usize,
}

/// Runs `audit ARGS` against `fake`, polling the process's peak RSS until it exits.
async fn audit(fake: &FakeApi, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let mappings = support::mappings(TABLE);
    let extra = std::env::var("AUDIT_ARGS").unwrap_or_default();
    let args: Vec<String> = args
        .iter()
        .map(|s| s.to_string())
        .chain(extra.split_whitespace().map(str::to_string))
        .collect();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rancher-remap"))
            .args(["audit", "-o", "json", "--project-mappings", &mappings])
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read stdout on a thread so a full pipe never stalls the audit.
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        let mut peak = 0;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            peak = peak.max(status_kib(child.id(), "VmHWM"));
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = started.elapsed();
        let out = reader.join().unwrap();
        let findings = serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if !matches!(status.code(), Some(0 | 1)) {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            eprintln!("audit failed: {err}");
        }
        Run {
            took,
            peak_kib: peak,
            code: status.code(),
            findings,
        }
    })
    .await
    .unwrap()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = env_or("AUDIT_OBJECTS", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| objects | page size | command | wall time | peak RSS | findings | exit |");
        println!("|---|---|---|---|---|---|---|");
        let row = |objects: usize, page: &str, what: &str, r: &Run| {
            println!(
                "| {objects} | {page} | {what} | {:.2} s | {:.1} MiB | {} | {:?} |",
                r.took.as_secs_f64(),
                r.peak_kib as f64 / 1024.0,
                r.findings,
                r.code.unwrap_or(-1)
            );
        };
        for objects in [n, 2 * n] {
            let fake = cluster(objects).await;
            for page in ["100", "500", "2000"] {
                if objects != n && page != "500" {
                    continue;
                }
                let mut runs = Vec::new();
                for _ in 0..3 {
                    runs.push(audit(&fake, &["--page-size", page]).await);
                }
                runs.sort_by_key(|r| r.took);
                row(objects, page, "audit (median of 3)", &runs[1]);
            }
            if objects == n {
                let r = audit(&fake, &["--fix"]).await;
                row(objects, "500", "audit --fix", &r);
                let r = audit(&fake, &[]).await;
                row(objects, "500", "audit after --fix", &r);
            }
        }
    });
}
