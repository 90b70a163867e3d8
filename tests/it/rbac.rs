//! The shipped RBAC, enforced: the fake API server evaluates the Roles and bindings rendered
//! from the chart and the kustomize install, and the real server, run with its
//! ServiceAccount's token, must get by with them. A Role missing one verb must break it.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::deploy::{chart_server_env, copy_tree, helm_template_at, kustomize, Certs};
use crate::fake_api::fake_rbac::{allowed, Attributes, ResourceAttributes, UserInfo};
use crate::fake_api::FakeApi;

/// The server's ServiceAccount in the chart's and the kustomize install.
pub const SERVER_SA: &str = "system:serviceaccount:rancher-remap:rancher-remap";
/// Its token, as the fake knows it.
pub const SERVER_TOKEN: &str = "server-sa-token";

/// The chart at `chart` rendered in the destination role (its RBAC and everything else).
pub fn chart_docs(chart: &Path) -> Vec<Value> {
    helm_template_at(chart, "destination", Certs::ServerMade, &[]).unwrap()
}

/// Every RBAC object the install ships: the chart in the destination role, the kustomize
/// destination overlay and deploy/audit. (The chart's and the overlay's Roles share a name:
/// the overlay's is stored last. Tests of the chart alone load [`chart_docs`].)
pub fn shipped_rbac() -> Vec<Value> {
    let mut docs = chart_docs(&repo("charts/rancher-remap"));
    docs.extend(kustomize(&repo("deploy/destination")));
    docs.extend(kustomize(&repo("deploy/audit")));
    docs
}

fn mappings_configmap(text: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {"kube-system.pair": text},
    })
}

/// The real server with the chart's environment, authenticated as its ServiceAccount, under
/// the RBAC already put in `fake`. With `own_certificates` (the chart's default), it keeps its
/// certificates in the fake's Secret and the caBundle of `install`'s webhook configurations,
/// which are put in the fake; without (an install whose certificates come from cert-manager),
/// it reads certificate files.
async fn serve_as_the_service_account(
    fake: &FakeApi,
    install: &[Value],
    own_certificates: bool,
) -> (ServeProcess, tempfile::TempDir) {
    fake.add_token(SERVER_TOKEN, SERVER_SA, &[]);
    let env = chart_server_env(&["--set", "clusterId=c-m-dst01"]);
    serve_with(fake, env, install, own_certificates).await
}

/// The real server with `env` as the ServiceAccount whose token the fake knows (see
/// [`serve_as_the_service_account`]).
pub async fn serve_with(
    fake: &FakeApi,
    env: Vec<(String, String)>,
    install: &[Value],
    own_certificates: bool,
) -> (ServeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig_with_token(dir.path(), SERVER_TOKEN);
    let mut all: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| own_certificates || !MANAGED_CERT_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("KUBECONFIG", kubeconfig.to_str().unwrap()));
    if !own_certificates {
        return (ServeProcess::start(&[], &all).await, dir);
    }
    let secret = env
        .iter()
        .find(|(k, _)| k == "RANCHER_REMAP_CERT_SECRET")
        .map(|(_, v)| v.split_once('/').unwrap())
        .expect("the chart's default: certificates the server keeps");
    fake.put_all(
        install
            .iter()
            .filter(|d| {
                d["kind"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("WebhookConfiguration"))
            })
            .cloned(),
    );
    let host = "rancher-remap.rancher-remap.svc";
    let s = ServeProcess::start_with_cert_secret(&[], &all, fake, secret, host).await;
    (s, dir)
}

/// The chart's settings for certificates the server keeps.
const MANAGED_CERT_ENV: [&str; 5] = [
    "RANCHER_REMAP_CERT_SECRET",
    "RANCHER_REMAP_SERVICE",
    "RANCHER_REMAP_WEBHOOK_CONFIGURATIONS",
    "RANCHER_REMAP_CERT_VALIDITY",
    "RANCHER_REMAP_CA_VALIDITY",
];

async fn ready(s: &ServeProcess) -> bool {
    reqwest::get(format!("http://{}/readyz", s.admin))
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_roles_let_the_server_follow_its_configmap_and_post_events() {
    let installs = [
        ("the chart", chart_docs(&repo("charts/rancher-remap"))),
        ("deploy/destination", kustomize(&repo("deploy/destination"))),
    ];
    for (install, docs) in installs {
        let fake = FakeApi::start().await;
        fake.put_rbac(&docs);
        fake.put(mappings_configmap("c-src01:p-a=c-m-dst01:p-b\n"));
        let own_certificates = install == "the chart";
        let (s, _dir) = serve_as_the_service_account(&fake, &docs, own_certificates).await;
        eventually(install, Duration::from_secs(15), async || ready(&s).await).await;
        // A reversed table is refused and said so in an Event: create on events.k8s.io.
        fake.put(mappings_configmap("c-m-dst01:p-b=c-src01:p-a\n"));
        eventually("the Event", Duration::from_secs(15), async || {
            fake.events()
                .iter()
                .any(|e| e["reason"] == "MappingsRejected")
        })
        .await;
        assert_eq!(fake.denials(), Vec::<String>::new(), "{install}");
    }
}

/// A copy of the chart whose rbac.yaml has `shipped` replaced by `edited`.
fn chart_with(shipped: &str, edited: &str) -> tempfile::TempDir {
    let chart = tempfile::tempdir().unwrap();
    copy_tree(&repo("charts/rancher-remap"), chart.path());
    let rbac = chart.path().join("templates/rbac.yaml");
    let text = std::fs::read_to_string(&rbac).unwrap();
    assert!(text.contains(shipped), "{text}");
    std::fs::write(&rbac, text.replace(shipped, edited)).unwrap();
    chart
}

/// The real server under the RBAC of `chart`, following a good table (`after_start` changes
/// the fake once it runs); the fake's first refusal matching `refused`, the server, and the
/// folder of its kubeconfig.
async fn first_refusal(
    chart: &Path,
    refused: &str,
    after_start: impl FnOnce(&FakeApi),
) -> (String, ServeProcess, tempfile::TempDir) {
    let fake = FakeApi::start().await;
    let docs = chart_docs(chart);
    fake.put_rbac(&docs);
    fake.put(mappings_configmap("c-src01:p-a=c-m-dst01:p-b\n"));
    let (s, dir) = serve_as_the_service_account(&fake, &docs, true).await;
    after_start(&fake);
    eventually(refused, Duration::from_secs(15), async || {
        fake.denials().iter().any(|d| d.contains(refused))
    })
    .await;
    let denial = fake.denials().into_iter().find(|d| d.contains(refused));
    (denial.unwrap(), s, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_role_without_watch_gets_a_403_and_the_server_stops_following() {
    let chart = chart_with(
        "verbs: [\"get\", \"list\", \"watch\"]",
        "verbs: [\"get\", \"list\"]",
    );
    let (denial, s, _dir) = first_refusal(chart.path(), "cannot watch", |_| {}).await;
    assert_eq!(
        denial,
        format!("configmaps \"rancher-remap-mappings\" is forbidden: User \"{SERVER_SA}\" cannot watch resource \"configmaps\" in API group \"\" in the namespace \"rancher-remap\"")
    );
    // The list was allowed, so the first table is in force; every later change is missed,
    // and the server says why.
    eventually(
        "the watch failure logged",
        Duration::from_secs(15),
        async || {
            let log = s.log.lock().unwrap().clone();
            log.contains("watching the mapping ConfigMap failed") && log.contains("403")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_role_without_event_create_cannot_say_a_table_was_rejected() {
    let chart = chart_with(
        "    resources: [\"events\"]\n    verbs: [\"create\"]",
        "    resources: [\"events\"]\n    verbs: [\"get\"]",
    );
    let (denial, _s, _dir) = first_refusal(chart.path(), "cannot create", |fake| {
        fake.put(mappings_configmap("c-m-dst01:p-b=c-src01:p-a\n"));
    })
    .await;
    assert!(
        denial.starts_with("events.events.k8s.io is forbidden")
            && denial.contains("cannot create resource \"events\" in API group \"events.k8s.io\""),
        "{denial}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_role_naming_another_configmap_leaves_the_server_without_a_table() {
    let chart = chart_with(
        "resourceNames: [{{ .Values.mappings.configMap | quote }}]",
        "resourceNames: [\"rancher-remap-mapping\"]",
    );
    let (denial, s, _dir) = first_refusal(chart.path(), "cannot list", |_| {}).await;
    assert!(
        denial.starts_with("configmaps \"rancher-remap-mappings\" is forbidden"),
        "{denial}"
    );
    assert!(!ready(&s).await, "ready without a table");
}

/// `verb` on `resource` (`group`) named `name` in `namespace`, as a request's attributes.
fn on(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }),
        path: String::new(),
    }
}

#[test]
fn rbac_evaluation_follows_names_namespaces_wildcards_and_paths() {
    let rbac = shipped_rbac();
    let server = UserInfo::new(SERVER_SA, &[]);
    let may = |u: &UserInfo, a: Attributes| allowed(&rbac, u, &a);
    let cm = "rancher-remap-mappings";
    assert!(may(
        &server,
        on("watch", "", "configmaps", "rancher-remap", cm)
    ));
    // resourceNames: another ConfigMap, or a list of them all, is refused.
    assert!(!may(
        &server,
        on("get", "", "configmaps", "rancher-remap", "other")
    ));
    assert!(!may(
        &server,
        on("list", "", "configmaps", "rancher-remap", "")
    ));
    // A Role holds in its namespace only.
    assert!(!may(&server, on("get", "", "configmaps", "default", cm)));
    assert!(may(
        &server,
        on("create", "events.k8s.io", "events", "rancher-remap", "")
    ));
    assert!(!may(
        &server,
        on("create", "", "events", "rancher-remap", "")
    ));
    assert!(!may(
        &server,
        on("get", "", "secrets", "rancher-remap", "x")
    ));
    // deploy/audit: an aggregated ClusterRole (the union of the roles its selector picks),
    // bound to a ServiceAccount; built-in groups, no Secrets.
    let audit = UserInfo::new(
        "system:serviceaccount:rancher-remap:rancher-remap-audit",
        &[],
    );
    assert!(may(&audit, on("list", "apps", "deployments", "", "")));
    assert!(!may(&audit, on("patch", "apps", "deployments", "ns", "d")));
    assert!(!may(&audit, on("list", "", "secrets", "", "")));
    // Discovery is open to every authenticated user, nothing else non-resource is.
    let path = |p: &str| Attributes {
        verb: "get".into(),
        resource: None,
        path: p.into(),
    };
    assert!(may(&server, path("/apis/apps/v1")));
    assert!(!may(&server, path("/metrics")));
    let masters = UserInfo::new("admin", &["system:masters"]);
    assert!(may(&masters, path("/metrics")));
}

#[test]
fn a_refusal_is_kube_apiservers_status_body() {
    let user = UserInfo::new("system:serviceaccount:ns:sa", &[]);
    let attrs = on("get", "", "configmaps", "ns", "x");
    assert!(!allowed(&[], &user, &attrs));
    assert_eq!(
        crate::fake_api::fake_rbac::forbidden(&user, &attrs),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"configmaps \"x\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"ns\"",
            "reason":"Forbidden","details":{"name":"x","kind":"configmaps"},"code":403})
    );
    let attrs = on("list", "rbac.authorization.k8s.io", "clusterroles", "", "");
    assert_eq!(
        crate::fake_api::fake_rbac::forbidden(&user, &attrs)["message"],
        "clusterroles.rbac.authorization.k8s.io is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
    );
}
