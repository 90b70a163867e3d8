//! The monitoring the chart ships — the alert rules and the Grafana dashboard — asks only for
//! metrics a running server exports, the dashboard shows every one of them, and the
//! certificate-expiry gauge follows the certificate in force.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use rancher_remap::rewrite::MutateSettings;
use rancher_remap::source::Source;

use crate::common::{data, eventually, metric, repo, start, ServeProcess};

const RULES: &str = "charts/rancher-remap/files/rancher-remap.rules.yaml";
const DASHBOARD: &str = "charts/rancher-remap/files/rancher-remap-dashboard.json";

/// Series from other exporters that the alerts may use (kube-state-metrics), documented in
/// the guide. Nothing else outside `rancher_remap_`.
const FOREIGN: &[&str] = &["kube_deployment_status_replicas_available"];

/// Every sample name an exposition can carry, from its `# TYPE` lines (so a family counts even
/// before its first sample): counters end in `_total`, histograms add `_bucket`, `_sum`,
/// `_count`.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The metric names a PromQL expression mentions: identifiers of exporters we know by prefix.
fn queried_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("rancher_remap_") || word.starts_with("kube_") {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo(RULES)).unwrap();
    let rules: Value = rancher_remap::manifest::parse_documents(&text).unwrap()[0].clone();
    let exprs: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    exprs
}

fn dashboard_exprs() -> Vec<String> {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }
    exprs
}

#[tokio::test]
async fn alerts_and_dashboard_query_only_exported_metrics_and_the_dashboard_shows_them_all() {
    let server = ServeProcess::start(&["--project-mappings", "p-src1=p-dst1"], &[]).await;
    // One call, so that the request families have samples too.
    let review: Value = serde_json::from_str(&data("create-deployment-migrated.json")).unwrap();
    let status = server
        .client(false)
        .post(server.url("/mutate"))
        .json(&review)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let text = server.metrics().await;
    let exported = exported_names(&text);
    assert!(
        exported.contains("rancher_remap_certificate_expiry_timestamp_seconds"),
        "{exported:?}"
    );
    assert!(text.contains("rancher_remap_requests_total{"), "{text}");

    for (what, exprs) in [("alert", rule_exprs()), ("dashboard", dashboard_exprs())] {
        for expr in &exprs {
            let names = queried_names(expr);
            assert!(!names.is_empty(), "{what} query names no metric: {expr}");
            for n in names {
                assert!(
                    exported.contains(&n) || FOREIGN.contains(&n.as_str()),
                    "{what} query uses {n}, which the server does not export: {expr}"
                );
            }
        }
    }

    // Every family on the dashboard (a histogram through its buckets).
    let shown: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| queried_names(e))
        .collect();
    for line in text.lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' '))
        else {
            continue;
        };
        let sample = match kind {
            "counter" => format!("{name}_total"),
            "histogram" => format!("{name}_bucket"),
            _ => name.to_string(),
        };
        assert!(shown.contains(&sample), "{sample} is not on the dashboard");
    }
}

/// notAfter of the first certificate in a PEM file, in Unix seconds.
fn not_after(pem: &[u8]) -> i64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.validity().not_after.timestamp()
}

#[tokio::test]
async fn certificate_expiry_gauge_follows_the_certificate_in_force() {
    let server = start(
        Source::Static("p-src1=p-dst1".into()),
        MutateSettings::default(),
    )
    .await;
    let gauge = "rancher_remap_certificate_expiry_timestamp_seconds";
    let first = not_after(&std::fs::read(server.dir.path().join("tls.crt")).unwrap());
    assert_eq!(metric(&server.metrics().await, gauge), Some(first as f64));

    // A new pair with a later notAfter, swapped in as kubelet does (one rename of a folder
    // would be atomic; here the key first, then the certificate, which completes the pair).
    let g = rancher_remap::cli::certs::generate("rancher-remap", "test", 30).unwrap();
    let second = not_after(g.serving.cert.as_bytes());
    assert!(second > first);
    std::fs::write(server.dir.path().join("tls.key.new"), &g.serving.key).unwrap();
    std::fs::write(server.dir.path().join("tls.crt.new"), &g.serving.cert).unwrap();
    std::fs::rename(
        server.dir.path().join("tls.key.new"),
        server.dir.path().join("tls.key"),
    )
    .unwrap();
    std::fs::rename(
        server.dir.path().join("tls.crt.new"),
        server.dir.path().join("tls.crt"),
    )
    .unwrap();
    eventually(
        "the gauge to show the new notAfter",
        Duration::from_secs(10),
        async || metric(&server.metrics().await, gauge) == Some(second as f64),
    )
    .await;

    // A broken pair is rejected: the gauge keeps the one still served.
    let rejected = "rancher_remap_certificate_reloads_total{result=\"rejected\"}";
    let before = metric(&server.metrics().await, rejected).unwrap();
    std::fs::write(server.dir.path().join("tls.crt"), "not a certificate").unwrap();
    eventually("the rejection", Duration::from_secs(10), async || {
        metric(&server.metrics().await, rejected) == Some(before + 1.0)
    })
    .await;
    assert_eq!(metric(&server.metrics().await, gauge), Some(second as f64));
}
