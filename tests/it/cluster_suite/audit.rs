//! `rancher-remap audit` and `audit --fix` under deploy/audit's RBAC, whose ClusterRoles are
//! aggregated (kube-controller-manager fills them): what each role grants as the apiserver
//! judges it, Secrets neither read nor granted unless asked, `--fix` refused under the
//! report-only role, and under the fix role passing through the webhook.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use super::doctor::{apply, token};
use super::install::{Install, CLUSTER_ID, TABLE};
use super::objects::{self, MIGRATED, PID};
use super::plane::{plane, ControlPlane, ADMIN, STORK};
use super::rewrites::{mappings_configmap, until_the_webhook_answers};
use crate::common::{bin, eventually, stderr, stdout};

const AUDIT_NS: &str = "rancher-remap";
const AUDIT_SA: &str = "system:serviceaccount:rancher-remap:rancher-remap-audit";
const FIXER: &str = "rancher-remap-audit-fixer";
const TEAM: &str = "rr-audit-team";

/// deploy/audit's RBAC file `name`.
fn audit_rbac_file(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(crate::common::repo("deploy/audit").join(name)).unwrap();
    rancher_remap::manifest::parse_documents(&text).unwrap()
}

/// Whether `who` may `verb` `resource` cluster-wide, as the apiserver judges it.
fn may(plane: &ControlPlane, who: &str, verb: &str, resource: &str) -> bool {
    let out = plane
        .kubectl(ADMIN)
        .args(["auth", "can-i", verb, resource, "--all-namespaces"])
        .arg(format!("--as={who}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// `audit --project-mappings TABLE -o json -n TEAM ARGS` with `kubeconfig`.
async fn audit(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args([
        "audit",
        "--project-mappings",
        TABLE,
        "-o",
        "json",
        "-n",
        TEAM,
    ])
    .args(args)
    .arg("--kubeconfig")
    .arg(kubeconfig);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn found(out: &Output) -> Vec<String> {
    let v: Value = serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)));
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["kind"].as_str().unwrap(),
                f["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// Every webhook call a replica has answered on /mutate.
fn mutate_calls(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("rancher_remap_requests_total{endpoint=\"mutate\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_fix_under_deploy_audits_aggregated_roles() {
    let (plane, _turn) = plane().await;
    let admin = plane.client(ADMIN).await;
    let fixer = install_audit_rbac(plane).await;
    roles_grant_what_they_say(plane, &fixer);

    // Migrated objects the webhook would rewrite (written before any webhook is installed).
    let marked = |labels: Value| json!({"namespace": TEAM, "labels": labels, "annotations": {MIGRATED: "true"}});
    // (A ConfigMap: a Deployment's controllers would make a ReplicaSet of it, another finding.)
    let mut web = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": marked(json!({PID: "p-ab12c", "app": "web"})), "data": {"k": "v"}});
    web["metadata"]["name"] = json!("web");
    let mut creds = json!({"apiVersion": "v1", "kind": "Secret", "metadata": marked(json!({PID: "p-ab12c"})),
        "data": {"password": "c2VjcmV0"}});
    creds["metadata"]["name"] = json!("creds");
    apply(
        plane,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEAM}}),
            web.clone(),
            creds.clone(),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let audit_kc = dir.path().join("audit");
    plane.write_kubeconfig(
        &audit_kc,
        &token(plane, AUDIT_NS, "rancher-remap-audit"),
        AUDIT_NS,
    );
    let fix_kc = dir.path().join("fix");
    plane.write_kubeconfig(&fix_kc, &token(plane, AUDIT_NS, FIXER), "default");

    report_only_role_reads_no_secrets_and_fixes_nothing(&audit_kc).await;
    assert_eq!(
        objects::get(&admin, &web).await["metadata"]["labels"][PID],
        "p-ab12c"
    );
    opt_in_files_add_secrets_and_custom_groups(plane, &fixer, &audit_kc).await;
    fix_passes_through_the_webhook(plane, &fix_kc, &[&web, &creds]).await;
}

/// deploy/audit's RBAC (its Job aside: no kubelet runs it) and a custom type, with who fixes: a
/// ServiceAccount bound to the fix role, as deploy/audit says to bind for fixing. Returns the
/// fixer's user name once kube-controller-manager has filled the aggregated roles.
async fn install_audit_rbac(plane: &ControlPlane) -> String {
    // A custom type (kubectl judges it only once the apiserver serves it).
    apply(
        plane,
        &[
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                      "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        ],
    );
    super::plane::run_ok(plane.kubectl(ADMIN).args([
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]));
    let mut docs = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": AUDIT_NS}})];
    docs.extend(
        crate::deploy::kustomize(&crate::common::repo("deploy/audit"))
            .into_iter()
            .filter(|d| d["kind"] != "Job"),
    );
    docs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": FIXER, "namespace": AUDIT_NS}}));
    docs.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": FIXER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "rancher-remap-audit-fix"},
        "subjects": [{"kind": "ServiceAccount", "name": FIXER, "namespace": AUDIT_NS}]}),
    );
    apply(plane, &docs);
    let fixer = format!("system:serviceaccount:{AUDIT_NS}:{FIXER}");
    // The aggregated roles are empty until kube-controller-manager fills them.
    eventually(
        "the roles aggregated",
        Duration::from_secs(20),
        async || {
            may(plane, AUDIT_SA, "list", "deployments.apps") && may(plane, &fixer, "patch", "pods")
        },
    )
    .await;
    fixer
}

/// What each role grants: the built-in types, no Secrets, no custom groups, patch only in the
/// fix role.
fn roles_grant_what_they_say(plane: &ControlPlane, fixer: &str) {
    for (who, patch) in [(AUDIT_SA, false), (fixer, true)] {
        for resource in [
            "configmaps",
            "namespaces",
            "pods",
            "deployments.apps",
            "cronjobs.batch",
            "networkpolicies.networking.k8s.io",
            "clusterroles.rbac.authorization.k8s.io",
            "poddisruptionbudgets.policy",
        ] {
            assert!(
                may(plane, who, "list", resource) && may(plane, who, "get", resource),
                "{who} {resource}"
            );
            assert_eq!(
                may(plane, who, "patch", resource),
                patch,
                "{who} {resource}"
            );
        }
        for verb in ["get", "list", "patch", "create", "update", "delete"] {
            assert!(!may(plane, who, verb, "secrets"), "{who} {verb} secrets");
            assert!(
                !may(plane, who, verb, "widgets.example.com"),
                "{who} {verb} widgets"
            );
        }
        assert!(
            !may(plane, who, "delete", "deployments.apps")
                && !may(plane, who, "update", "configmaps")
        );
    }
}

/// Under the report-only role: Secrets neither read nor needed by default, refused when asked
/// for (and said), and `--fix` refused by RBAC with exit 2.
async fn report_only_role_reads_no_secrets_and_fixes_nothing(audit_kc: &std::path::Path) {
    let out = audit(audit_kc, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(found(&out), ["ConfigMap/web"]);
    assert!(
        stderr(&out).contains("skipped: secrets: not read without --include-secrets"),
        "{}",
        stderr(&out)
    );
    // Asked for, not granted: the apiserver refuses, and the audit says what it skipped.
    let out = audit(audit_kc, &["--include-secrets"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(found(&out), ["ConfigMap/web"]);
    assert!(
        stderr(&out).contains(&format!("skipped: secrets in {TEAM}: 403 Forbidden")),
        "{}",
        stderr(&out)
    );
    // --fix under the report-only role: refused by RBAC, exit 2 (nothing changed: the caller
    // checks).
    let out = audit(audit_kc, &["--fix"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(&format!("User \\\"{AUDIT_SA}\\\" cannot patch"))
            || said.contains(&format!("User \"{AUDIT_SA}\" cannot patch")),
        "{said}"
    );
}

/// The opt-in files add what they say, to the roles their labels name; then Secrets are
/// audited (never printed).
async fn opt_in_files_add_secrets_and_custom_groups(
    plane: &ControlPlane,
    fixer: &str,
    audit_kc: &std::path::Path,
) {
    let mut opt_in = audit_rbac_file("secrets.yaml");
    opt_in.extend(audit_rbac_file("custom-groups.example.yaml"));
    apply(plane, &opt_in);
    eventually(
        "the opt-in roles aggregated",
        Duration::from_secs(20),
        async || {
            may(plane, AUDIT_SA, "list", "secrets")
                && may(plane, AUDIT_SA, "list", "widgets.example.com")
                && may(plane, fixer, "patch", "secrets")
        },
    )
    .await;
    for (who, patch) in [(AUDIT_SA, false), (fixer, true)] {
        assert_eq!(may(plane, who, "patch", "secrets"), patch, "{who}");
        assert_eq!(
            may(plane, who, "patch", "widgets.example.com"),
            patch,
            "{who}"
        );
    }
    let out = audit(audit_kc, &["--include-secrets"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(found(&out), ["ConfigMap/web", "Secret/creds"]);
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("c2VjcmV0"), "no Secret data");
}

/// `--fix` under the fix role, with the webhook installed: each patch passes through it, the
/// `found` objects are rewritten, and a second audit is clean.
async fn fix_passes_through_the_webhook(
    plane: &'static ControlPlane,
    fix_kc: &std::path::Path,
    found: &[&Value],
) {
    let admin = plane.client(ADMIN).await;
    let ns = "rr-audit";
    let install = Install::helm(plane, ns, &[&format!("clusterId={CLUSTER_ID}")]);
    objects::create(&admin, &mappings_configmap(ns, TABLE), false)
        .await
        .unwrap();
    let app = "rr-audit-app";
    apply(
        plane,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app}})],
    );
    let server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&plane.client(STORK).await, app).await;
    let before = mutate_calls(&server.metrics().await);
    let out = audit(fix_kc, &["--fix", "--include-secrets"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for obj in found {
        assert_eq!(
            objects::get(&admin, obj).await["metadata"]["labels"][PID],
            "p-xy99z"
        );
    }
    let after = mutate_calls(&server.metrics().await);
    assert!(
        after >= before + 2.0,
        "the webhook saw {before} then {after}"
    );
    let out = audit(fix_kc, &["--include-secrets"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second audit is clean: {}",
        stderr(&out)
    );
    drop(server);
    drop(install);
}
