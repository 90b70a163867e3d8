//! What a user sees when something they did is wrong: logs in one format and without colour
//! when captured through a pipe, a missing certificate said once with the command that makes
//! one, an empty review body answered with a sentence, and empty input refused by name.

use std::process::Stdio;

use crate::common::{bin, post_bytes, stderr, stdout, ServeProcess};

const MAPPINGS: &str = "p-a=p-b,c-src:p-a=c-dst:p-b";

/// `serve` with certificate files that do not exist, stderr captured through a pipe.
fn serve_without_certificates(log_format: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .args([
            "serve",
            "--project-mappings",
            MAPPINGS,
            "--cluster-id",
            "c-dst",
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--log-format", log_format])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn serve_logs_in_the_format_chosen_and_says_once_how_to_make_a_missing_certificate() {
    let out = serve_without_certificates("json");
    assert_eq!(out.status.code(), Some(1));
    let log = stderr(&out);
    assert!(stdout(&out).is_empty());
    // Every line is JSON, the error included.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{log}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line: {log}"));
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("tls.crt") && message.contains("rancher-remap certs --out DIR"),
        "{message}"
    );
    assert_eq!(log.matches("No such file or directory").count(), 1, "{log}");

    // Text, captured through a pipe: no colour codes.
    let out = serve_without_certificates("text");
    assert_eq!(out.status.code(), Some(1));
    let log = stderr(&out);
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(
        log.contains("INFO") && log.contains("ERROR") && log.contains("rancher-remap certs"),
        "{log}"
    );
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_review_body_is_answered_with_what_to_send() {
    let server = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let client = server.client(false);
    for path in ["/mutate", "/validate"] {
        for body in ["", "\n"] {
            let (status, v) = post_bytes(&client, &server.url(path), body).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert_eq!(v["code"], 400);
            let error = v["error"].as_str().unwrap();
            assert!(
                error.starts_with(
                    "request body is empty: POST an admission.k8s.io/v1 AdmissionReview as JSON"
                ),
                "{error}"
            );
            assert!(!error.contains("end of input"), "{error}");
        }
    }
}

/// Runs the binary with `args`, stdin from `/dev/null` (an empty pipe upstream).
fn run_empty(args: &[&str]) -> std::process::Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

#[test]
fn empty_input_is_an_error_naming_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "\n---\n").unwrap();
    let empty = empty.to_str().unwrap();
    for (args, says) in [
        (
            &["rewrite", "--project-mappings", MAPPINGS, "-f", "-"][..],
            "error: no objects in input: stdin held no Kubernetes object",
        ),
        (
            &["rewrite", "--project-mappings", MAPPINGS, "-f", empty][..],
            "error: no objects in input:",
        ),
        (
            &["derive", "-f", empty][..],
            "error: no ClusterPair in input:",
        ),
        (
            &["check", "-f", "-"][..],
            "error: stdin is empty: expected a ClusterPair, a mapping ConfigMap or src=dst mapping text",
        ),
    ] {
        let out = run_empty(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}");
        // No field path of a file that has none.
        assert!(!err.contains("data:"), "{args:?}: {err}");
    }
}

#[test]
fn doctor_without_a_cluster_says_so_in_one_line_and_prints_the_json_it_promises() {
    let home = tempfile::tempdir().unwrap();
    let doctor = |extra: &[&str]| {
        bin()
            .arg("doctor")
            .args(extra)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let out = doctor(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("doctor: could not check: no cluster to talk to")
            && err.contains(
                "`rancher-remap check --cluster-id ID -f mappings.yaml` checks a table offline"
            ),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = doctor(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{report}");
    assert_eq!(checks[0]["status"], "fail");
    assert_eq!(checks[0]["name"], "could-not-check");
    assert!(checks[0]["message"]
        .as_str()
        .unwrap()
        .contains("no cluster to talk to"));
}
