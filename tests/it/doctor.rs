//! `rancher-remap doctor`, from the outside: the real binary against the fake API server
//! holding what the chart installs (rendered with the pinned helm), Rancher's per-project
//! ClusterRoles and Namespaces, and RBAC the fake evaluates.

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

/// Binds ClusterRole `role` to user `user`.
fn bind(fake: &FakeApi, role: &str, user: &str) {
    fake.put(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{role}-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": user}]}),
    );
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

fn assert_check(checks: &Value, name: &str, status: &str, says: &[&str]) {
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
async fn an_identity_without_manage_namespaces_is_named_with_verb_and_project() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), TABLE);
    fake.put(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "namespace-creator"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}]}),
    );
    bind(&fake, "namespace-creator", "u-stork");
    bind(&fake, "namespace-creator", "u-member");
    bind(&fake, "p-b-namespaces-edit", "u-member");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let (out, checks) = doctor(&kubeconfig, &["--migration-user", "u-stork"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_check(
        &checks,
        "migration-identity",
        "fail",
        &["user u-stork (--migration-user) may not manage-namespaces project p-b"],
    );
    assert!(!checks["migration-identity"]["message"]
        .as_str()
        .unwrap()
        .contains("may not create"));
    let (out, checks) = doctor(&kubeconfig, &["--migration-user", "u-member"]).await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
    assert_check(&checks, "migration-identity", "ok", &["u-member"]);
    // A ServiceAccount allowed through its namespace's group, as the API server would see it.
    let sa = "system:serviceaccount:kube-system:stork-migrator";
    for role in ["namespace-creator", "p-b-namespaces-edit"] {
        fake.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{role}-kube-system")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kube-system"}]}));
    }
    let (out, checks) = doctor(&kubeconfig, &["--migration-user", sa]).await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
}

/// A ClusterPair whose kubeconfig points at `server` with an opaque `token`.
fn clusterpair(server: &str, token: &str) -> String {
    format!("apiVersion: stork.libopenstorage.org/v1alpha1\nkind: ClusterPair\nmetadata:\n  name: remote\n  namespace: kube-system\nspec:\n  config:\n    clusters:\n      dst:\n        server: {server}\n    contexts:\n      c:\n        cluster: dst\n        user: stork\n    current-context: c\n    users:\n      stork:\n        token: {token}\n  platformOptions:\n    rancher:\n      projectMappings:\n        p-a: p-b\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusterpairs_identity_is_learned_by_selfsubjectreview_and_its_token_never_shown() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), TABLE);
    fake.add_token(MARKER, "u-pair-stork", &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let pair = dir.path().join("pair.yaml");
    std::fs::write(&pair, clusterpair(&fake.url(), MARKER)).unwrap();
    let (out, checks) = doctor(&kubeconfig, &["--clusterpair", pair.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_check(
        &checks,
        "migration-identity",
        "fail",
        &[
            "user u-pair-stork (--clusterpair",
            "may not create namespaces",
            "may not manage-namespaces project p-b",
        ],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(MARKER), "{text}");
    // A token the server refuses: said so, still without the token.
    std::fs::write(
        &pair,
        clusterpair(&fake.url(), &format!("{MARKER}-unknown")),
    )
    .unwrap();
    let (out, checks) = doctor(&kubeconfig, &["--clusterpair", pair.to_str().unwrap()]).await;
    assert_check(
        &checks,
        "migration-identity",
        "warn",
        &["identity not learned", "401"],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(MARKER), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_wiring_faults_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = chart(&[]);
    // A caBundle from another CA.
    let other = {
        use base64::Engine;
        let g = rancher_remap::cli::certs::generate("rancher-remap", "rancher-remap", 30).unwrap();
        json!(base64::engine::general_purpose::STANDARD.encode(g.ca_cert))
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

/// The `helm test` Pod's identity and its token in the fake.
const DOCTOR_SA: &str = "system:serviceaccount:rancher-remap:rancher-remap-doctor";
const DOCTOR_TOKEN: &str = "doctor-sa-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_test_rbac_is_enough_for_doctor_and_each_rule_is_needed() {
    let fake = FakeApi::start().await;
    let hooks = crate::deploy::helm_test_hooks(&["--set", "clusterId=c-m-dst01"]);
    install(&fake, &chart(&[]), TABLE);
    // A migration user, so doctor asks SubjectAccessReviews too; it may do what it must.
    let mut cm = mapping_configmap(TABLE);
    cm["metadata"]["annotations"] = json!({"rancher-remap.io/migration-users": "u-stork"});
    fake.put(cm);
    fake.put(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "namespace-creator"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}]}),
    );
    bind(&fake, "namespace-creator", "u-stork");
    bind(&fake, "p-b-namespaces-edit", "u-stork");
    fake.put_rbac(&hooks);
    fake.add_token(DOCTOR_TOKEN, DOCTOR_SA, &[]);
    let pod = hooks.iter().find(|d| d["kind"] == "Pod").unwrap();
    let args: Vec<String> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[0], "doctor");
    let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig_with_token(dir.path(), DOCTOR_TOKEN);
    let (out, checks) = doctor(&kubeconfig, &args).await;
    assert_eq!(out.status.code(), Some(0), "{checks:#} {}", stderr(&out));
    assert_check(&checks, "migration-identity", "ok", &["u-stork"]);
    // The server's own Secret holds its CA key: this account may not read it, by design, and
    // doctor checks the caBundle alone.
    assert_check(
        &checks,
        "webhook",
        "ok",
        &[
            "caBundle holds a valid CA",
            "Secret rancher-remap/rancher-remap-certs",
        ],
    );
    assert_eq!(
        fake.denials(),
        [format!("secrets \"rancher-remap-certs\" is forbidden: User \"{DOCTOR_SA}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"rancher-remap\"")]
    );

    // No more than needed: without any one rule, doctor cannot check, and says what it needs.
    for role in hooks
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let rules = role["rules"].as_array().unwrap();
        for (i, rule) in rules.iter().enumerate() {
            let mut less = role.clone();
            less["rules"].as_array_mut().unwrap().remove(i);
            fake.put(less);
            let (out, _) = doctor(&kubeconfig, &args).await;
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "without {rule}: {err}");
            let resource = rule["resources"][0].as_str().unwrap();
            assert!(
                err.contains("forbidden") && err.contains(resource),
                "without {rule}: {err}"
            );
            fake.put(role.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_read_exits_2_naming_the_call_and_the_permission() {
    let fake = FakeApi::start().await;
    install(&fake, &chart(&[]), TABLE);
    fake.add_token(DOCTOR_TOKEN, "u-nobody", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = doctor(&fake.kubeconfig_with_token(dir.path(), DOCTOR_TOKEN), &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "get deployments.apps rancher-remap in namespace rancher-remap at http://127.0.0.1:"
        ) && err.contains(
            "forbidden; doctor needs RBAC permission to get deployments.apps rancher-remap"
        ),
        "{err}"
    );
    assert!(!err.contains(DOCTOR_TOKEN), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derive_whoami_records_the_identity_the_api_server_names_and_only_then_asks() {
    let fake = FakeApi::start().await;
    fake.add_token(MARKER, "u-pair-stork", &[]);
    let dir = tempfile::tempdir().unwrap();
    let pair = dir.path().join("pair.yaml");
    std::fs::write(&pair, clusterpair(&fake.url(), MARKER)).unwrap();
    let derive = |whoami: bool| {
        let mut cmd = bin();
        cmd.args(["derive", "-o", "json", "-f"]).arg(&pair);
        if whoami {
            cmd.arg("--whoami");
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    // Without --whoami: an opaque token cannot be read, and nothing is asked.
    let out = derive(false).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot tell the migration identity"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fake.requests(),
        0,
        "derive without --whoami made a network call"
    );
    let out = derive(true).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        cm["metadata"]["annotations"]["rancher-remap.io/migration-users"],
        "u-pair-stork"
    );
    assert!(fake.requests() > 0);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(MARKER), "{text}");
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
