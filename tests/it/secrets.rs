//! No credential ever leaves: the real `serve` process validates ClusterPairs full of credentials
//! (good and broken), and its responses, its whole log and its metrics are scanned for them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Ends the server process (ours) if the test fails midway.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_in_responses_logs_or_metrics() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let (cert, key) = pair();
    let (_, other_key) = pair();

    // Every secret string, and the lines of every PEM body (a partial leak counts).
    let mut secrets = vec![
        TOKEN.to_string(),
        PASSWORD.to_string(),
        NOT_PEM.to_string(),
        b64(&key),
        b64(&other_key),
        b64(NOT_PEM),
    ];
    for pem in [&key, &other_key] {
        secrets.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
    }

    let objects = [
        clusterpair(json!({"token": TOKEN}), json!({"p-a": "p-b"})),
        clusterpair(
            json!({"username": "u", "password": PASSWORD}),
            json!({"p-a": "p-b"}),
        ),
        clusterpair(
            json!({"client-certificate-data": b64(&cert), "client-key-data": b64(&key)}),
            json!({"p-a": "p-b"}),
        ),
        // Mismatched key, non-PEM data, a bad mapping, a token beside a certificate.
        clusterpair(
            json!({"client-certificate-data": b64(&cert), "client-key-data": b64(&other_key), "token": TOKEN}),
            json!({"p-a": "p-b", "p-c": "p-b", "bad id": "p-x"}),
        ),
        clusterpair(
            json!({"client-certificate-data": b64(NOT_PEM), "client-key-data": NOT_PEM}),
            json!({"p-a": ""}),
        ),
        clusterpair(json!({"token": TOKEN}), json!(["p-a=p-b"])),
    ];

    let mut child = Reap(
        bin()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args(["--project-mappings", "p-a=p-b", "--log-format", "json"])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.0.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.0.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (webhook, admin) = loop {
        let found = log.lock().unwrap().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "serving").then(|| {
                (
                    v["webhook_addr"].as_str().unwrap().parse().unwrap(),
                    v["admin_addr"].as_str().unwrap().to_string(),
                )
            })
        });
        if let Some(f) = found {
            break f;
        }
        if Instant::now() > deadline {
            panic!("server did not start: {}", log.lock().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let client = tls_client(&ca, false, webhook);
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
    // Malformed reviews whose values are secrets: the answers must not quote them.
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
        let r = client
            .post(url("/validate"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        answers.push_str(&r.text().await.unwrap());
    }
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // SIGTERM (to our own child, by its id), so every log line is flushed.
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();

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
