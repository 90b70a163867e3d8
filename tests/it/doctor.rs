//! `rancher-remap doctor`, from the outside: the real binary against the fake API server
//! holding what the chart installs (rendered with the pinned helm), Rancher's per-project
//! ClusterRoles and Namespaces. What needs the apiserver's own judgement (the `helm test`
//! account's RBAC, SubjectAccessReviews, SelfSubjectReview, a forbidden read) is in
//! `cluster_suite::doctor`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::deploy::{helm_template, Certs};
use crate::fake_api::FakeApi;

/// This (the destination) cluster's Rancher ID and the source's.
pub const THIS: &str = "c-m-dst01";
const SOURCE: &str = "c-src01";
/// Maps the source's p-a onto this cluster's p-b.
pub const TABLE: &str = "p-a=p-b\nc-src01:p-a=c-m-dst01:p-b\n";
/// A credential that must never show in any output.
const MARKER: &str = "MaRkEr-opaque-token-5kq";

/// The kinds of the chart's render the fake serves (and doctor reads).
const SERVED: &[&str] = &[
    "Deployment",
    "Secret",
    "Service",
    "ServiceAccount",
    "MutatingWebhookConfiguration",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// The chart's destination render (clusterId THIS), with `extra` values.
pub fn chart(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--set", "clusterId=c-m-dst01"];
    args.extend_from_slice(extra);
    helm_template("destination", Certs::ServerMade, &args).unwrap()
}

/// What a healthy destination holds: the chart's objects (the Deployment with a ready
/// replica), the mapping ConfigMap with `table`, and Rancher's project p-b (its ClusterRole
/// and a Namespace annotated with this cluster's ID).
pub fn install(fake: &FakeApi, docs: &[Value], table: &str) {
    for d in as_the_server_leaves_it(docs)
        .iter()
        .filter(|d| SERVED.iter().any(|k| d["kind"] == *k))
    {
        let mut d = d.clone();
        if d["kind"] == "Deployment" {
            d["status"] = json!({"replicas": 2, "readyReplicas": 2});
        }
        fake.put(d);
    }
    fake.put(mapping_configmap(table));
    fake.put(project_role("p-b"));
    fake.put(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
        "annotations": {"field.cattle.io/projectId": format!("{THIS}:p-b")},
        "labels": {"field.cattle.io/projectId": "p-b"}}}),
    );
}

/// `docs` as a running server with the chart's default (`--cert-secret`) leaves them: its
/// certificate Secret added, its CA bundle in every caBundle.
fn as_the_server_leaves_it(docs: &[Value]) -> Vec<Value> {
    use base64::Engine;
    use rancher_remap::pki::plan::{apply, now, Policy, Step, Why};
    let policy = Policy {
        label: "rancher-remap".into(),
        dns_names: rancher_remap::pki::service_dns_names("rancher-remap", "rancher-remap"),
        serving_validity: 365 * 86_400,
        ca_validity: 3_650 * 86_400,
        rollover_grace: 600,
    };
    let m = apply(Step::Replace(Why::Missing), None, &policy, now()).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut docs = docs.to_vec();
    for d in &mut docs {
        if d["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("WebhookConfiguration"))
        {
            for w in d["webhooks"].as_array_mut().unwrap() {
                w["clientConfig"]["caBundle"] = json!(b64(&m.bundle));
            }
        }
    }
    docs.push(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "rancher-remap-certs", "namespace": "rancher-remap"},
        "data": {"tls.crt": b64(&m.serving.cert), "tls.key": b64(&m.serving.key),
                 "ca.crt": b64(&m.ca.cert), "ca.key": b64(&m.ca.key),
                 "ca-bundle.crt": b64(&m.bundle)}}),
    );
    docs
}

pub fn mapping_configmap(table: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {"kube-system.pair": table}})
}

/// The ClusterRole Rancher makes for project `p` on a downstream cluster.
fn project_role(p: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{p}-namespaces-edit")},
        "rules": [{"apiGroups": ["management.cattle.io"], "resources": ["projects"],
                   "resourceNames": [p], "verbs": ["*"]}]})
}

/// `doctor -o json --kubeconfig K args…` off the runtime's threads: its output, and the
/// checks by name.
pub async fn doctor(kubeconfig: &Path, args: &[&str]) -> (Output, Value) {
    let mut cmd = bin();
    cmd.args(["doctor", "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    let mut by_name = json!({});
    for c in report["checks"].as_array().into_iter().flatten() {
        by_name[c["name"].as_str().unwrap()] = c.clone();
    }
    (out, by_name)
}

pub fn assert_check(checks: &Value, name: &str, status: &str, says: &[&str]) {
    let c = &checks[name];
    assert_eq!(c["status"], status, "{name}: {checks:#}");
    let message = c["message"].as_str().unwrap_or_default();
    for s in says {
        assert!(message.contains(s), "{name} should say {s:?}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_destination_project_fails_until_its_clusterrole_exists() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), "p-a=p-q\nc-src01:p-a=c-m-dst01:p-q\n");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let (out, checks) = doctor(&kubeconfig, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_check(
        &checks,
        "destination-projects",
        "fail",
        &["p-q", "p-q-namespaces-edit"],
    );
    for ok in ["mappings", "cluster-id", "webhook"] {
        assert_check(&checks, ok, "ok", &[]);
    }
    // More ClusterRoles than one page holds (500), all listed before the project's: doctor
    // reads every page.
    for i in 0..1_100 {
        fake.put(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("aaa-filler-{i:04}")}, "rules": []}),
        );
    }
    fake.put(project_role("p-q"));
    let (out, checks) = doctor(&kubeconfig, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
    assert_check(&checks, "destination-projects", "ok", &[]);
    assert_check(&checks, "direction", "ok", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_table_is_reported_as_reversed() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), TABLE);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let reversed = "p-b=p-a\nc-m-dst01:p-b=c-src01:p-a\n";
    fake.put(mapping_configmap(reversed));
    let (out, checks) = doctor(&kubeconfig, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_check(
        &checks,
        "direction",
        "fail",
        &["reversed", "derive --reverse"],
    );
    assert_check(&checks, "cluster-id", "fail", &[]);
    // The same by projects alone, before install and with no cluster ID anywhere.
    let (out, checks) = doctor(
        &kubeconfig,
        &["--project-mappings", "p-b=p-a", "-n", "elsewhere"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_check(
        &checks,
        "direction",
        "fail",
        &["source projects exist here"],
    );
    assert_check(&checks, "webhook", "warn", &["not installed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_wiring_faults_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = chart(&[]);
    // A caBundle from another CA.
    let other = {
        use base64::Engine;
        let g = rancher_remap::cli::certs::generate("rancher-remap", "rancher-remap", 30).unwrap();
        json!(base64::engine::general_purpose::STANDARD.encode(g.ca.cert))
    };
    let fake = FakeApi::start().await;
    install(&fake, &docs, TABLE);
    let mut hook = fake
        .get(
            &docs
                .iter()
                .find(|d| d["kind"] == "MutatingWebhookConfiguration")
                .unwrap()
                .clone(),
        )
        .unwrap();
    let good = hook["webhooks"][0]["clientConfig"]["caBundle"].clone();
    hook["webhooks"][0]["clientConfig"]["caBundle"] = other;
    fake.put(hook.clone());
    let (out, checks) = doctor(&fake.kubeconfig(dir.path()), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_check(
        &checks,
        "webhook",
        "fail",
        &["does not verify the serving certificate for rancher-remap.rancher-remap.svc"],
    );

    // No cluster ID in the matchConditions.
    hook["webhooks"][0]["clientConfig"]["caBundle"] = good;
    let text = hook["webhooks"][0]["matchConditions"]
        .to_string()
        .replace(&format!("'{THIS}'"), "''");
    hook["webhooks"][0]["matchConditions"] = serde_json::from_str(&text).unwrap();
    fake.put(hook);
    let (_, checks) = doctor(&fake.kubeconfig(dir.path()), &[]).await;
    assert_check(
        &checks,
        "webhook",
        "fail",
        &["does not carry cluster ID c-m-dst01"],
    );

    // No ready replica.
    let fake = FakeApi::start().await;
    install(&fake, &docs, TABLE);
    let mut d = fake
        .get(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rancher-remap", "namespace": "rancher-remap"}}))
        .unwrap();
    d["status"] = json!({"replicas": 2, "readyReplicas": 0});
    fake.put(d);
    let (out, checks) = doctor(&fake.kubeconfig(dir.path()), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_check(&checks, "webhook", "fail", &["no ready replica"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_2_naming_it_and_never_the_credential() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    // A password in the server URL, and a token: neither may show.
    let with_password = url.replace("http://", "http://admin:PaSsMaRkEr@");
    let kubeconfig = crate::fake_api::write_kubeconfig(dir.path(), &with_password);
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .replace("user: {}", &format!("user:\n    token: {MARKER}"));
    std::fs::write(&kubeconfig, text).unwrap();
    let run = doctor(&kubeconfig, &[]);
    let (out, _) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("doctor ends within its timeout");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the API server at {url}")),
        "{err}"
    );
    let all = format!("{err}{}", stdout(&out));
    assert!(
        !all.contains(MARKER) && !all.contains("PaSsMaRkEr"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_install_a_mappings_file_is_checked_and_the_webhook_only_warned() {
    let fake = FakeApi::start().await;
    fake.put(project_role("p-b"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mappings.txt");
    std::fs::write(&file, TABLE).unwrap();
    let (out, checks) = doctor(
        &fake.kubeconfig(dir.path()),
        &[
            "--mappings-file",
            file.to_str().unwrap(),
            "--cluster-id",
            THIS,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
    assert_check(&checks, "mappings", "ok", &["--mappings-file"]);
    assert_check(&checks, "webhook", "warn", &["not installed"]);
    assert_eq!(SOURCE, "c-src01");

    // A file that cannot be read is "could not check" (2), not a failed check (1).
    let missing = dir.path().join("no-such-file");
    let (out, _) = doctor(
        &fake.kubeconfig(dir.path()),
        &["--mappings-file", missing.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-file"), "{}", stderr(&out));

    // So is a --clusterpair that cannot be read, or holds no usable ClusterPair; the file is
    // named, never quoted (it holds credentials).
    let broken = dir.path().join("broken-pair.yaml");
    std::fs::write(
        &broken,
        format!("apiVersion: v1\nkind: Secret\ntoken: {MARKER}\n"),
    )
    .unwrap();
    for pair in [&missing, &broken] {
        let (out, _) = doctor(
            &fake.kubeconfig(dir.path()),
            &["--clusterpair", pair.to_str().unwrap()],
        )
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("--clusterpair {}", pair.display())),
            "{err}"
        );
        assert!(
            !err.contains(MARKER) && !stdout(&out).contains(MARKER),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_install_with_server_made_certificates_is_checked_whole() {
    // Its Secret is named alone (in the server's namespace): doctor reads it there and
    // verifies the serving certificate against the caBundle.
    let docs = crate::certificates::kustomize_server_made("destination", "rancher-remap");
    let fake = FakeApi::start().await;
    install(&fake, &docs, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let (out, checks) = doctor(&fake.kubeconfig(dir.path()), &[]).await;
    assert_check(
        &checks,
        "webhook",
        "ok",
        &["caBundle verifies the serving certificate for rancher-remap.rancher-remap.svc"],
    );
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_output_is_one_line_per_check_in_a_stable_order() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), TABLE);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["doctor", "--context", "fake", "--kubeconfig"])
        .arg(fake.kubeconfig(dir.path()));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next().unwrap(), cells.next().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ok", "mappings"),
            ("ok", "cluster-id"),
            ("ok", "destination-projects"),
            ("ok", "direction"),
            ("warn", "migration-identity"),
            ("ok", "webhook"),
        ],
        "{text}"
    );
}
