//! Nothing leaked, as a matrix: every command and the server × broken inputs that carry marker
//! secrets beside each credential field (syntax errors, tabs, truncation, wrong types, files
//! that fall back to mapping text). Every output is scanned: stdout, stderr, the server's log
//! at debug level, its metrics, the Events it posts, and its answers. Each case must also fail
//! visibly (so the scan looks at a real error, not at silence).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::fake_api::FakeApi;

/// Every marker starts with this, so a truncated (partly leaked) marker is found too.
const MARK: &str = "SeCrEt";
const TOKEN: &str = "SeCrEt-TOKEN.eyJzdWIiOiJ4In0.Sig_9";
const PASSWORD: &str = "SeCrEt-PASSWORD+hunter2";
const CA_DATA: &str = "SeCrEtQ0FEQVRBLUNBLWJvZHk=";
const CERT_DATA: &str = "SeCrEtQ0VSVC1ib2R5LWNsaWVudA==";
const KEY_DATA: &str = "SeCrEtS0VZLWJvZHktY2xpZW50";

/// A ClusterPair as `storkctl generate clusterpair` writes it, every credential a marker.
fn clusterpair_yaml() -> String {
    format!(
        "apiVersion: stork.libopenstorage.org/v1alpha1
kind: ClusterPair
metadata:
  name: remotecluster
  namespace: migrationnamespace
spec:
  config:
    clusters:
      dst:
        server: https://10.0.0.1:6443
        certificate-authority-data: {CA_DATA}
    contexts:
      ctx:
        cluster: dst
        user: u
    current-context: ctx
    users:
      u:
        token: {TOKEN}
        client-certificate-data: {CERT_DATA}
        client-key-data: {KEY_DATA}
        username: admin
        password: {PASSWORD}
  options:
    token: {TOKEN}
  platformOptions:
    rancher:
      projectMappings:
        p-ab12c: p-xy99z
"
    )
}

/// The broken inputs, by name.
fn broken_inputs() -> Vec<(String, String)> {
    let good = clusterpair_yaml();
    let mut out = Vec::new();
    for secret in [TOKEN, PASSWORD, CA_DATA, CERT_DATA, KEY_DATA] {
        let line_end = good.find(secret).unwrap() + secret.len();
        // A syntax error on the line after each credential.
        let mut text = good.clone();
        text.insert_str(line_end, "\n        - : [");
        out.push((format!("syntax error after {}", &secret[..12]), text));
        // A tab-indented line after it.
        let mut text = good.clone();
        text.insert_str(line_end, "\n\tbroken: 1");
        out.push((format!("tab after {}", &secret[..12]), text));
        // Truncated inside it (the rest of the file lost).
        out.push((
            format!("truncated in {}", &secret[..12]),
            good[..line_end - secret.len() + 10].to_string(),
        ));
        // An unclosed quote starting at it.
        out.push((
            format!("unclosed quote at {}", &secret[..12]),
            good.replacen(secret, &format!("\"{secret}"), 1),
        ));
    }
    // Wrong types beside the credentials.
    out.push((
        "users as a list".into(),
        good.replace("    users:\n      u:\n", "    users:\n    - u:\n"),
    ));
    out.push((
        "projectMappings as a string".into(),
        good.replace(
            "      projectMappings:\n        p-ab12c: p-xy99z\n",
            &format!("      projectMappings: {TOKEN}\n"),
        ),
    ));
    out.push((
        "a mapping value that is a credential".into(),
        good.replace("p-ab12c: p-xy99z", &format!("p-ab12c: {PASSWORD}")),
    ));
    out.push((
        "a credential as a mapping key".into(),
        good.replace("p-ab12c: p-xy99z", &format!("{TOKEN}: p-xy99z")),
    ));
    // As JSON, cut short inside the token.
    let json = serde_json::to_string_pretty(&manifest_value(&good)).unwrap();
    let cut = json.find(TOKEN).unwrap() + 12;
    out.push((
        "JSON truncated in the token".into(),
        json[..cut].to_string(),
    ));
    // Not a manifest at all: mapping text that holds credentials (a kubeconfig fragment).
    out.push((
        "credentials read as mapping text".into(),
        format!("p-ab12c=p-xy99z\ntoken: {TOKEN}\npassword={PASSWORD}\n{KEY_DATA}\n"),
    ));
    out
}

fn manifest_value(yaml: &str) -> Value {
    rancher_remap::manifest::parse_objects(yaml)
        .unwrap()
        .remove(0)
}

/// Panics if `text` holds any part of a marker.
fn assert_clean(what: &str, text: &str) {
    if let Some(i) = text.find(MARK) {
        let from = text[..i]
            .char_indices()
            .rev()
            .nth(200)
            .map_or(0, |(j, _)| j);
        panic!("{what} leaks a credential: …{}", &text[from..]);
    }
}

#[test]
fn the_commands_never_quote_a_credential_from_broken_input() {
    let dir = tempfile::tempdir().unwrap();
    let objects = repo("deploy/examples/migrated-objects.json");
    let objects = objects.to_str().unwrap();
    for (name, text) in broken_inputs() {
        let file = dir.path().join("input.yaml");
        std::fs::write(&file, &text).unwrap();
        let file = file.to_str().unwrap();
        let runs: [(&str, Vec<&str>); 4] = [
            ("check", vec!["check", "-f", file]),
            ("derive", vec!["derive", "-f", file]),
            (
                "rewrite --mappings-file",
                vec!["rewrite", "--mappings-file", file, "-f", objects],
            ),
            (
                "rewrite -f",
                vec![
                    "rewrite",
                    "--project-mappings",
                    "p-ab12c=p-xy99z",
                    "-f",
                    file,
                ],
            ),
        ];
        for (command, args) in runs {
            let out = run(&args, "");
            let (o, e) = (stdout(&out), stderr(&out));
            // Every case is an error somewhere, except a `rewrite -f` of a ClusterPair that
            // parses: its output is the object itself, which is what the user asked for.
            let parses = rancher_remap::manifest::parse_objects(&text).is_ok();
            if !(command == "rewrite -f" && parses) {
                assert_clean(&format!("{command} on {name} (stdout)"), &o);
            }
            assert_clean(&format!("{command} on {name} (stderr)"), &e);
            if !(command == "rewrite -f" && parses) && command != "check" {
                assert!(!out.status.success(), "{command} on {name}: {e}");
                assert!(e.contains("error"), "{command} on {name}: {e}");
            }
            if command == "check" && !parses {
                // A broken manifest is an error on stderr; text that is no manifest is checked
                // as mapping text, its entries named by number and line on stdout.
                assert!(!out.status.success(), "{command} on {name}: {e}");
                assert!(
                    e.contains("line ") || o.contains("line "),
                    "{command} on {name}: the error gives a position: {o}{e}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_logs_a_credential_from_a_broken_mappings_file() {
    for (name, text) in broken_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mappings.yaml");
        std::fs::write(&file, &text).unwrap();
        let mut server = ServeProcess::start(
            &["--mappings-file", file.to_str().unwrap()],
            &[("RUST_LOG", "debug")],
        )
        .await;
        let rejected = "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}";
        let admin = server.admin;
        let mut metrics = String::new();
        eventually(
            &format!("{name}: the table refused"),
            Duration::from_secs(10),
            async || {
                metrics = reqwest::get(format!("http://{admin}/metrics"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                metric(&metrics, rejected).is_some_and(|n| n >= 1.0)
            },
        )
        .await;
        let ready = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), 503, "{name}: not ready");
        assert!(server.terminate().success());
        let log = server.log.lock().unwrap().clone();
        assert!(log.contains("mapping table rejected"), "{name}: {log}");
        assert_clean(&format!("serve --mappings-file on {name} (log)"), &log);
        assert_clean(
            &format!("serve --mappings-file on {name} (metrics)"),
            &metrics,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_logs_or_posts_a_credential_from_a_broken_mapping_configmap() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\nusers: [{{name: fake, user: {{}}}}]\n",
            fake.addr
        ),
    )
    .unwrap();
    // Each data key holds one broken input (a ClusterPair pasted where mappings go, or
    // credentials read as mapping text); a good key beside them.
    let inputs = broken_inputs();
    let mut data = serde_json::Map::new();
    data.insert("good.pair".into(), json!("p-ab12c=p-xy99z\n"));
    for (i, (_, text)) in inputs.iter().enumerate() {
        data.insert(format!("ns.pair{i}"), json!(text));
    }
    fake.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": data,
    }));
    let mut server = ServeProcess::start(
        &[
            "--mappings-configmap",
            "rancher-remap/rancher-remap-mappings",
        ],
        &[
            ("RUST_LOG", "debug"),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
    )
    .await;
    eventually(
        "the MappingsRejected Event",
        Duration::from_secs(10),
        async || {
            fake.events()
                .iter()
                .any(|e| e["reason"] == "MappingsRejected")
        },
    )
    .await;
    let metrics = server.metrics().await;
    assert!(server.terminate().success());
    let log = server.log.lock().unwrap().clone();
    let events = serde_json::to_string(&fake.events()).unwrap();
    assert!(
        events.contains("entry #"),
        "entries named by number: {events}"
    );
    assert_clean("serve --mappings-configmap (log)", &log);
    assert_clean("serve --mappings-configmap (metrics)", &metrics);
    assert_clean("serve --mappings-configmap (Events)", &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_never_answers_or_logs_a_credential_from_a_broken_clusterpair() {
    let mut server = ServeProcess::start(&["--validate-only"], &[("RUST_LOG", "debug")]).await;
    let client = server.client(false);
    let review = |object: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "kind": "ClusterPair"},
            "resource": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "resource": "clusterpairs"},
            "name": "remotecluster", "namespace": "migrationnamespace", "operation": "CREATE",
            "userInfo": {"username": "admin"}, "object": object, "oldObject": null, "dryRun": false}})
    };
    let good = manifest_value(&clusterpair_yaml());
    let mut bodies: Vec<(String, String)> = Vec::new();
    // Wrong types beside every credential, and credentials where mappings go.
    for (field, value) in [
        ("/spec/config/users", json!([TOKEN])),
        ("/spec/config/users/u", json!(PASSWORD)),
        ("/spec/config/users/u/token", json!({"nested": TOKEN})),
        ("/spec/config/clusters/dst", json!([CA_DATA])),
        ("/spec/config/contexts", json!(TOKEN)),
        ("/spec/config", json!(KEY_DATA)),
        (
            "/spec/platformOptions/rancher/projectMappings",
            json!(TOKEN),
        ),
        (
            "/spec/platformOptions/rancher/projectMappings/p-ab12c",
            json!(PASSWORD),
        ),
        ("/spec/platformOptions/rancher", json!([CERT_DATA])),
        ("/spec/options", json!([TOKEN])),
        ("/spec", json!(TOKEN)),
    ] {
        let mut o = good.clone();
        *o.pointer_mut(field).unwrap() = value;
        bodies.push((field.to_string(), review(o).to_string()));
    }
    let mut o = good.clone();
    o["spec"]["platformOptions"]["rancher"]["projectMappings"] =
        json!({TOKEN: "p-a", "p-b": KEY_DATA});
    bodies.push(("credential mapping keys".into(), review(o).to_string()));
    // Bodies that are not JSON, cut inside a credential.
    let whole = review(good).to_string();
    for secret in [TOKEN, PASSWORD, KEY_DATA] {
        let cut = whole.find(secret).unwrap() + 12;
        bodies.push((
            format!("cut in {}", &secret[..12]),
            whole[..cut].to_string(),
        ));
    }
    let mut answers = String::new();
    for (name, body) in &bodies {
        let r = client
            .post(server.url("/validate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let refused = status == 400 || v["response"]["allowed"] == false;
        assert!(refused, "{name}: refused, got {status} {text}");
        answers.push_str(&text);
    }
    let metrics = server.metrics().await;
    assert!(server.terminate().success());
    let log = server.log.lock().unwrap().clone();
    assert_clean("/validate answers", &answers);
    assert_clean("/validate log", &log);
    assert_clean("/validate metrics", &metrics);
}
