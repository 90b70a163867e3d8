//! No credential ever leaves: the real `serve` process validates ClusterPairs full of credentials
//! (good and broken), and its responses, its whole log and its metrics are scanned for them.

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.VERY-SECRET-SIGNATURE";
const PASSWORD: &str = "hunter2-VERY-SECRET-password";
const NOT_PEM: &str = "VERY-SECRET-not-a-pem-body";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        "system:serviceaccount:kube-system:stork",
    );
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn clusterpair(user: Value, mappings: Value) -> Value {
    json!({
        "apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "ClusterPair",
        "metadata": {"name": "remote", "namespace": "mig"},
        "spec": {
            "config": {"clusters": {"dst": {"server": "https://10.0.0.1:6443"}},
                       "contexts": {"ctx": {"cluster": "dst", "user": "u"}},
                       "users": {"u": user}, "current-context": "ctx"},
            "options": {"token": TOKEN},
            "platformOptions": {"rancher": {"projectMappings": mappings}}
        }
    })
}

fn review(uid: &str, obj: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "kind": "ClusterPair"},
        "resource": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "resource": "clusterpairs"},
        "name": "remote", "namespace": "mig", "operation": "CREATE",
        "userInfo": {"username": "admin"}, "object": obj, "oldObject": null, "dryRun": false}})
}

/// Every secret string, and the lines of every PEM body (a partial leak counts).
fn secret_strings(key: &str, other_key: &str) -> Vec<String> {
    let mut secrets = vec![
        TOKEN.to_string(),
        PASSWORD.to_string(),
        NOT_PEM.to_string(),
        b64(key),
        b64(other_key),
        b64(NOT_PEM),
    ];
    for pem in [key, other_key] {
        secrets.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
    }
    secrets
}

fn clusterpairs_holding_secrets(cert: &str, key: &str, other_key: &str) -> [Value; 6] {
    [
        clusterpair(json!({"token": TOKEN}), json!({"p-a": "p-b"})),
        clusterpair(
            json!({"username": "u", "password": PASSWORD}),
            json!({"p-a": "p-b"}),
        ),
        clusterpair(
            json!({"client-certificate-data": b64(cert), "client-key-data": b64(key)}),
            json!({"p-a": "p-b"}),
        ),
        // Mismatched key, non-PEM data, a bad mapping, a token beside a certificate.
        clusterpair(
            json!({"client-certificate-data": b64(cert), "client-key-data": b64(other_key), "token": TOKEN}),
            json!({"p-a": "p-b", "p-c": "p-b", "bad id": "p-x"}),
        ),
        clusterpair(
            json!({"client-certificate-data": b64(NOT_PEM), "client-key-data": NOT_PEM}),
            json!({"p-a": ""}),
        ),
        clusterpair(json!({"token": TOKEN}), json!(["p-a=p-b"])),
    ]
}

/// Malformed reviews whose values are secrets: the answers (appended to `answers`) must not
/// quote them.
async fn post_malformed_reviews(client: &reqwest::Client, url: &str, answers: &mut String) {
    for (body, status) in [
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 1, "kind": TOKEN}}),
            400,
        ),
        (json!({"apiVersion": TOKEN, "kind": PASSWORD}), 400),
        // Well-formed, but an unknown operation on a non-ClusterPair: allowed as is.
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "kind": {"kind": "ClusterPair"}, "operation": TOKEN, "object": {"spec": [TOKEN]}}}),
            200,
        ),
    ] {
        let r = client.post(url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        answers.push_str(&r.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_in_responses_logs_or_metrics() {
    let (cert, key) = pair();
    let (_, other_key) = pair();

    let secrets = secret_strings(&key, &other_key);
    let objects = clusterpairs_holding_secrets(&cert, &key, &other_key);

    let mut server =
        ServeProcess::start(&["--project-mappings", "p-a=p-b"], &[("RUST_LOG", "debug")]).await;
    let (webhook, admin) = (server.webhook, server.admin);
    let client = server.client(false);
    let url = |p: &str| format!("https://localhost:{}{p}", webhook.port());
    let mut answers = String::new();
    let mut denied = 0;
    for (i, obj) in objects.iter().enumerate() {
        for path in ["/validate", "/mutate"] {
            let r = client
                .post(url(path))
                .json(&review(&format!("uid-{i}"), obj.clone()))
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            if path == "/validate" && text.contains("\"allowed\":false") {
                denied += 1;
            }
            answers.push_str(&text);
        }
    }
    post_malformed_reviews(&client, &url("/validate"), &mut answers).await;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // SIGTERM, so every log line is flushed.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let log = server.log.lock().unwrap().clone();

    assert_eq!(
        denied, 3,
        "the three broken ClusterPairs are refused: {answers}"
    );
    assert!(
        log.contains("\"endpoint\":\"validate\""),
        "admissions were logged: {log}"
    );
    for s in &secrets {
        assert!(!answers.contains(s.as_str()), "a response leaks {s:.12}…");
        if let Some(i) = log.find(s.as_str()) {
            panic!("the log leaks {s:.12}…: {}", &log[i.saturating_sub(400)..i]);
        }
        assert!(!metrics.contains(s.as_str()), "the metrics leak {s:.12}…");
    }
}
