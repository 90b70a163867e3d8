//! `rancher-remap doctor` against the real apiserver: the `helm test` account's RBAC, installed
//! as the release's hooks, is enough for every check and each of its rules is needed; migration
//! identities are judged by real SubjectAccessReviews against Rancher's per-project ClusterRoles;
//! a ClusterPair's identity is learned by a real SelfSubjectReview; a forbidden read is named.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::install::Install;
use super::plane::{plane, run_ok, ControlPlane, ADMIN, SOMEONE};
use crate::common::{bin, eventually, stderr, stdout, ServeProcess};
use crate::doctor::{assert_check, doctor};
/// This cluster: the suite's one destination ID (other tests annotate Namespaces with it, and
/// doctor reads this cluster's ID off them).
const THIS: &str = super::install::CLUSTER_ID;

/// The doctor tests' table: the source's p-a is this cluster's p-b.
const TABLE: &str = "p-a=p-b\nc-src01:p-a=c-m-4kq8z9rt:p-b\n";
const PID: &str = "field.cattle.io/projectId";

/// `kubectl apply` of `docs`, as the admin.
pub fn apply(plane: &ControlPlane, docs: &[Value]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(file.path(), list.to_string()).unwrap();
    run_ok(plane.kubectl(ADMIN).args(["apply", "-f"]).arg(file.path()));
}

/// A token of ServiceAccount `ns/name`, as `kubectl create token` makes it.
pub fn token(plane: &ControlPlane, ns: &str, name: &str) -> String {
    run_ok(
        plane
            .kubectl(ADMIN)
            .args(["create", "token", name, "-n", ns]),
    )
    .trim()
    .to_string()
}

/// The ClusterRole Rancher makes for project `p` on a downstream cluster.
fn project_role(p: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{p}-namespaces-edit")},
        "rules": [{"apiGroups": ["management.cattle.io"], "resources": ["projects"],
                   "resourceNames": [p], "verbs": ["*"]}]})
}

/// May create Namespaces (what a migration identity needs besides its projects).
const CREATOR: &str = "rr-doctor-namespace-creator";

fn namespace_creator() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CREATOR},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}]})
}

/// Binds ClusterRole `role` to `subject` (`{"kind": "User", "name": ...}` and the like).
fn bind(role: &str, name: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject]})
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn namespace(name: &str, annotations: Value, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "annotations": annotations, "labels": labels}})
}

/// Marks the Deployment's pods Ready, as the kubelet would once their readiness probe passes
/// (no kubelet runs here; the test runs the replica itself and has seen it ready), and waits
/// until the Deployment counts a ready replica.
async fn pods_ready(install: &Install) {
    let ns = install.ns.as_str();
    let plane = install.plane;
    let pods = || -> Vec<String> {
        run_ok(plane.kubectl(ADMIN).args([
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/name=rancher-remap",
            "-o",
            "name",
        ]))
        .lines()
        .map(str::to_string)
        .collect()
    };
    eventually(
        "the ReplicaSet's pods",
        Duration::from_secs(20),
        async || !pods().is_empty(),
    )
    .await;
    let ready = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
    for pod in pods() {
        run_ok(plane.kubectl(ADMIN).args([
            "patch",
            &pod,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &ready.to_string(),
        ]));
    }
    eventually(
        "a ready replica counted",
        Duration::from_secs(20),
        async || {
            run_ok(plane.kubectl(ADMIN).args([
                "get",
                "deployment",
                "rancher-remap",
                "-n",
                ns,
                "-o",
                "jsonpath={.status.readyReplicas}",
            ]))
            .trim()
            .parse::<i32>()
            .is_ok_and(|n| n >= 1)
        },
    )
    .await;
}

/// A kubeconfig at `dir/NAME` for `token`.
fn kubeconfig_for(plane: &ControlPlane, dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    plane.write_kubeconfig(&path, token, "default");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_test_account_is_enough_for_doctor_and_each_of_its_rules_is_needed() {
    let (plane, _turn) = plane().await;
    let ns = "rr-doctor";
    let (install, server) = install_with_a_ready_replica(plane, ns).await;
    let (rbac, account, args) = helm_test_hooks(plane, ns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(plane, dir.path(), "doctor", &token(plane, ns, &account));

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
            &format!("Secret {ns}/rancher-remap-certs"),
        ],
    );
    let may_read_secret = plane
        .kubectl(ADMIN)
        .args([
            "auth",
            "can-i",
            "get",
            "secret/rancher-remap-certs",
            "-n",
            ns,
        ])
        .arg(format!("--as=system:serviceaccount:{ns}:{account}"))
        .output()
        .unwrap();
    assert_eq!(stdout(&may_read_secret).trim(), "no");
    each_rule_is_needed(plane, &rbac, &kubeconfig, &args).await;
    drop(server);
    drop(install);
}

/// The chart installed in `ns` with the table (and a migration user who may do what it must:
/// Rancher's project p-b here, its ClusterRole, and a Namespace of this cluster in it), its
/// replica ready, its caBundle published and its pods counted ready.
async fn install_with_a_ready_replica(
    plane: &'static ControlPlane,
    ns: &str,
) -> (Install, ServeProcess) {
    apply(
        plane,
        &[
            project_role("p-b"),
            namespace_creator(),
            bind(CREATOR, "rr-doctor-u-stork-creates", user("u-stork")),
            bind(
                "p-b-namespaces-edit",
                "rr-doctor-u-stork-p-b",
                user("u-stork"),
            ),
            namespace(
                "rr-doctor-shop",
                json!({PID: format!("{THIS}:p-b")}),
                json!({PID: "p-b"}),
            ),
        ],
    );
    let install = Install::helm(plane, ns, &[&format!("clusterId={THIS}")]);
    apply(
        plane,
        &[json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "rancher-remap-mappings", "namespace": ns,
                         "labels": {"rancher-remap.io/mappings": "true"},
                         "annotations": {"rancher-remap.io/migration-users": "u-stork"}},
            "data": {"kube-system.pair": TABLE}})],
    );
    let server = install.start_replica(0, &[]).await;
    eventually("the replica ready", Duration::from_secs(30), async || {
        reqwest::get(format!("http://{}/readyz", server.admin))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    eventually(
        "the caBundle published",
        Duration::from_secs(30),
        async || {
            !run_ok(plane.kubectl(ADMIN).args([
                "get",
                "mutatingwebhookconfiguration",
                "rancher-remap",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ]))
            .trim()
            .is_empty()
        },
    )
    .await;
    pods_ready(&install).await;
    install.restore_service_references();
    (install, server)
}

/// `helm install` leaves the test hooks out: they are the release's, as `helm test` makes them.
/// Applies their RBAC, and returns it with the Pod's ServiceAccount and doctor's arguments (the
/// Pod is what the test runs).
fn helm_test_hooks(plane: &ControlPlane, ns: &str) -> (Vec<Value>, String, Vec<String>) {
    let hooks = rancher_remap::manifest::parse_documents(&run_ok(plane.helm().args([
        "get",
        "hooks",
        "rancher-remap",
        "-n",
        ns,
    ])))
    .unwrap();
    let pod = hooks.iter().find(|d| d["kind"] == "Pod").unwrap();
    let rbac: Vec<Value> = hooks
        .iter()
        .filter(|d| d["kind"] != "Pod")
        .cloned()
        .collect();
    assert!(rbac.iter().any(|d| d["kind"] == "ClusterRole"));
    apply(plane, &rbac);
    let account = pod["spec"]["serviceAccountName"].as_str().unwrap();
    let args: Vec<String> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[0], "doctor");
    (rbac, account.to_string(), args[1..].to_vec())
}

/// No more than needed: without any one rule of `rbac`, doctor cannot check, and says what it
/// needs; without the policies' rule it checks the rest and warns that it could not look.
async fn each_rule_is_needed(
    plane: &ControlPlane,
    rbac: &[Value],
    kubeconfig: &Path,
    args: &[&str],
) {
    for role in rbac
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let rules = role["rules"].as_array().unwrap();
        for (i, rule) in rules.iter().enumerate() {
            let mut less = role.clone();
            less["rules"].as_array_mut().unwrap().remove(i);
            apply(plane, &[less]);
            let resource = rule["resources"][0].as_str().unwrap();
            let policies = resource == "mutatingadmissionpolicies";
            eventually(
                &format!("doctor without {rule}"),
                Duration::from_secs(15),
                async || {
                    let (out, _) = doctor(kubeconfig, args).await;
                    let (said, exit_as_expected) = match policies {
                        true => (stdout(&out), out.status.code() != Some(2)),
                        false => (stderr(&out), out.status.code() == Some(2)),
                    };
                    exit_as_expected && said.contains("forbidden") && said.contains(resource)
                },
            )
            .await;
            apply(plane, std::slice::from_ref(role));
        }
    }
}

/// A ClusterPair whose kubeconfig points at `server` (trusting `ca`) with `token`.
fn clusterpair(server: &str, ca: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    format!("apiVersion: stork.libopenstorage.org/v1alpha1\nkind: ClusterPair\nmetadata:\n  name: remote\n  namespace: kube-system\nspec:\n  config:\n    clusters:\n      dst:\n        server: {server}\n        certificate-authority-data: {ca}\n    contexts:\n      c:\n        cluster: dst\n        user: stork\n    current-context: c\n    users:\n      stork:\n        token: {token}\n  platformOptions:\n    rancher:\n      projectMappings:\n        p-a: p-b\n")
}

/// Identities judged by the apiserver: `--migration-user`s by SubjectAccessReviews, a
/// ClusterPair's by SelfSubjectReview (its token never shown), and a forbidden read named. No
/// install: doctor before install, with a mappings file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_identities_are_judged_by_the_apiservers_reviews() {
    let (plane, _turn) = plane().await;
    let migrators = "rr-doctor-migrators";
    apply(
        plane,
        &[
            project_role("p-b"),
            namespace_creator(),
            namespace(migrators, json!({}), json!({})),
            bind(CREATOR, "rr-doctor-u-creator", user("u-creator")),
            bind(CREATOR, "rr-doctor-u-member-creates", user("u-member")),
            bind(
                "p-b-namespaces-edit",
                "rr-doctor-u-member-p-b",
                user("u-member"),
            ),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let before_install = BeforeInstall::new(plane, dir.path());

    let (out, checks) = before_install
        .doctor(&["--migration-user", "u-creator"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{checks:#}");
    assert_check(
        &checks,
        "migration-identity",
        "fail",
        &["user u-creator (--migration-user) may not manage-namespaces project p-b"],
    );
    assert!(!checks["migration-identity"]["message"]
        .as_str()
        .unwrap()
        .contains("may not create"));
    let (out, checks) = before_install
        .doctor(&["--migration-user", "u-member"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
    assert_check(&checks, "migration-identity", "ok", &["u-member"]);

    a_service_account_is_allowed_through_its_namespaces_group(&before_install, migrators).await;
    a_clusterpairs_identity_is_the_one_the_apiserver_names(&before_install, dir.path()).await;

    // Somebody with no role: the first read is refused, named with the permission it needs,
    // never with the credential.
    let (out, _) = doctor(&plane.kubeconfig(SOMEONE), &["-n", "rr-doctor-x"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "get deployments.apps rancher-remap in namespace rr-doctor-x at {}",
            plane.url
        )) && err.contains(
            "forbidden; doctor needs RBAC permission to get deployments.apps rancher-remap"
        ),
        "{err}"
    );
    assert!(!err.contains(plane.token(SOMEONE)), "{err}");
}

/// Doctor as the admin before install: the table from a mappings file, this cluster's ID given,
/// no install in the namespace.
struct BeforeInstall {
    plane: &'static ControlPlane,
    mappings: std::path::PathBuf,
}

impl BeforeInstall {
    fn new(plane: &'static ControlPlane, dir: &Path) -> BeforeInstall {
        let mappings = dir.join("mappings.txt");
        std::fs::write(&mappings, TABLE).unwrap();
        BeforeInstall { plane, mappings }
    }

    async fn doctor(&self, extra: &[&str]) -> (std::process::Output, Value) {
        let mut args = vec![
            "--mappings-file",
            self.mappings.to_str().unwrap(),
            "--cluster-id",
            THIS,
            "-n",
            "rr-doctor-not-installed",
        ];
        args.extend(extra);
        doctor(&self.plane.kubeconfig(ADMIN), &args).await
    }
}

/// A ServiceAccount allowed through its namespace's group, as the apiserver sees it.
async fn a_service_account_is_allowed_through_its_namespaces_group(
    before_install: &BeforeInstall,
    migrators: &str,
) {
    let group = format!("system:serviceaccounts:{migrators}");
    let sa = format!("system:serviceaccount:{migrators}:stork-migrator");
    let (out, checks) = before_install.doctor(&["--migration-user", &sa]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "before its bindings: {checks:#}"
    );
    apply(
        before_install.plane,
        &[
            bind(
                CREATOR,
                "rr-doctor-migrators-create",
                json!({"kind": "Group",
                "apiGroup": "rbac.authorization.k8s.io", "name": group}),
            ),
            bind(
                "p-b-namespaces-edit",
                "rr-doctor-migrators-p-b",
                json!({"kind": "Group",
                "apiGroup": "rbac.authorization.k8s.io", "name": group}),
            ),
        ],
    );
    let mut checks = Value::Null;
    eventually(
        "the group's bindings",
        Duration::from_secs(15),
        async || {
            let (out, c) = before_install.doctor(&["--migration-user", &sa]).await;
            checks = c;
            out.status.code() == Some(0)
        },
    )
    .await;
    assert_check(&checks, "migration-identity", "ok", &[&sa]);
}

/// A ClusterPair's identity: whoever its (opaque) token is, as the apiserver says
/// (SelfSubjectReview); somebody with no role at all. A token the apiserver refuses is said so.
/// Neither token is ever shown.
async fn a_clusterpairs_identity_is_the_one_the_apiserver_names(
    before_install: &BeforeInstall,
    dir: &Path,
) {
    let plane = before_install.plane;
    let secret = plane.token(SOMEONE).to_string();
    let pair = dir.join("pair.yaml");
    std::fs::write(&pair, clusterpair(&plane.url, &plane.ca, &secret)).unwrap();
    let (out, checks) = before_install
        .doctor(&["--clusterpair", pair.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_check(
        &checks,
        "migration-identity",
        "fail",
        &[
            &format!("user {SOMEONE} (--clusterpair"),
            "may not create namespaces",
            "may not manage-namespaces project p-b",
        ],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(&secret), "{text}");
    // A token the apiserver refuses: said so, still without the token.
    let unknown = format!("{secret}x");
    std::fs::write(&pair, clusterpair(&plane.url, &plane.ca, &unknown)).unwrap();
    let (out, checks) = before_install
        .doctor(&["--clusterpair", pair.to_str().unwrap()])
        .await;
    assert_check(
        &checks,
        "migration-identity",
        "warn",
        &["identity not learned", "401"],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(&secret), "{text}");
}

/// `derive --whoami` records the identity the apiserver names for a ClusterPair's token, and
/// without `--whoami` makes no call at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derive_whoami_records_the_identity_the_apiserver_names_and_only_then_asks() {
    let (plane, _turn) = plane().await;
    let secret = plane.token(SOMEONE).to_string();
    let dir = tempfile::tempdir().unwrap();
    let pair = dir.path().join("pair.yaml");
    let derive = |whoami: bool| {
        let mut cmd = bin();
        cmd.args(["derive", "-o", "json", "-f"]).arg(&pair);
        if whoami {
            cmd.arg("--whoami");
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    // Without --whoami: an opaque token cannot be read, and nothing is asked (the pair points
    // at a listener that would see any connection).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let silent = format!("https://{}", listener.local_addr().unwrap());
    std::fs::write(&pair, clusterpair(&silent, &plane.ca, &secret)).unwrap();
    let out = derive(false).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot tell the migration identity"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "derive without --whoami made a network call"
    );

    std::fs::write(&pair, clusterpair(&plane.url, &plane.ca, &secret)).unwrap();
    let out = derive(true).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        cm["metadata"]["annotations"]["rancher-remap.io/migration-users"],
        SOMEONE
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(&secret), "{text}");
}
