//! `map-projects` against Rancher's management objects (CRDs with the fields Rancher's
//! management.cattle.io/v3 has for these), served by the real apiserver: matching, renamed,
//! unmatched, ambiguous, `--create-missing`; and the ConfigMap it prints, applied, is the table
//! the webhook rewrites with.

use std::process::Output;

use serde_json::{json, Value};

use super::install::{Install, CLUSTER_ID};
use super::objects::{self, MIGRATED, PID};
use super::plane::{plane, ControlPlane, ADMIN, STORK};
use super::rewrites::until_the_webhook_answers;

const SOURCE: &str = "c-7gh2k";

fn crd(kind: &str, plural: &str, scope: &str, required: &[&str]) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.management.cattle.io")},
        "spec": {"group": "management.cattle.io", "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                      "listKind": format!("{kind}List")},
            "versions": [{"name": "v3", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"spec": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "required": required,
                        "properties": {"displayName": {"type": "string"},
                                       "clusterName": {"type": "string"}}}}}}}]}})
}

fn cluster(id: &str, name: &str) -> Value {
    json!({"apiVersion": "management.cattle.io/v3", "kind": "Cluster",
           "metadata": {"name": id}, "spec": {"displayName": name}})
}

fn project(cluster: &str, id: &str, name: &str) -> Value {
    json!({"apiVersion": "management.cattle.io/v3", "kind": "Project",
           "metadata": {"name": id, "namespace": cluster},
           "spec": {"displayName": name, "clusterName": cluster}})
}

/// `rancher-remap map-projects ARGS` against the management cluster, as the admin.
fn map_projects(plane: &ControlPlane, args: &[&str]) -> Output {
    let mut cmd = crate::common::bin();
    cmd.arg("map-projects")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig(ADMIN))
        .args(args);
    cmd.output().unwrap()
}

async fn create_all(client: &kube::Client, objects: &[Value]) {
    for o in objects {
        objects::create(client, o, false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", o["metadata"]));
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Rancher's management types, and two clusters with their projects: Shop and Payments (its
/// case differs on the destination), Default and System, a renamed one and none for it.
async fn rancher_clusters_and_projects(plane: &ControlPlane, admin: &kube::Client) {
    create_all(
        admin,
        &[
            crd("Cluster", "clusters", "Cluster", &["displayName"]),
            crd(
                "Project",
                "projects",
                "Namespaced",
                &["displayName", "clusterName"],
            ),
        ],
    )
    .await;
    super::plane::run_ok(plane.kubectl(ADMIN).args([
        "wait",
        "--for=condition=Established",
        "crd/clusters.management.cattle.io",
        "crd/projects.management.cattle.io",
        "--timeout=30s",
    ]));
    create_all(
        admin,
        &[
            cluster(SOURCE, "prod-west"),
            cluster(CLUSTER_ID, "dr-east"),
            namespace(SOURCE),
            namespace(CLUSTER_ID),
            project(SOURCE, "p-ab12c", "Shop"),
            project(SOURCE, "p-cd56e", "Payments"),
            project(SOURCE, "p-dflt1", "Default"),
            project(SOURCE, "p-sys01", "System"),
            project(SOURCE, "p-old01", "Legacy Name"),
            project(CLUSTER_ID, "p-xy99z", "Shop"),
            project(CLUSTER_ID, "p-gh34k", "payments"),
            project(CLUSTER_ID, "p-dflt2", "Default"),
            project(CLUSTER_ID, "p-sys02", "System"),
            project(CLUSTER_ID, "p-new01", "New Name"),
        ],
    )
    .await;
}

/// The ConfigMap it prints, applied where the webhook runs, is the table it rewrites with.
async fn the_printed_configmap_is_the_table_the_webhook_rewrites_with(
    plane: &'static ControlPlane,
    admin: &kube::Client,
    rename: &[&str],
) {
    let ns = "rr-projects";
    let install = Install::helm(plane, ns, &[&format!("clusterId={CLUSTER_ID}")]);
    let mut args = vec!["--source", SOURCE, "--destination", CLUSTER_ID, "-n", ns];
    args.extend(rename);
    let out = map_projects(plane, &args);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let printed = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(printed.path(), &out.stdout).unwrap();
    super::plane::run_ok(
        plane
            .kubectl(ADMIN)
            .arg("apply")
            .arg("-f")
            .arg(printed.path()),
    );
    let app = "rr-projects-app";
    create_all(admin, &[namespace(app)]).await;
    let _server = install.start_replica(0, &[]).await;
    let stork = plane.client(STORK).await;
    until_the_webhook_answers(&stork, app).await;
    let moved = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "legacy", "namespace": app, "labels": {PID: "p-old01"},
                     "annotations": {MIGRATED: "true", PID: "c-7gh2k:p-old01"}}});
    let stored = objects::create(&stork, &moved, false).await.unwrap();
    assert_eq!(stored["metadata"]["labels"][PID], "p-new01");
    assert_eq!(
        stored["metadata"]["annotations"][PID],
        "c-m-4kq8z9rt:p-new01"
    );
    drop(install);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_projects_pairs_rancher_projects_by_name_and_the_table_it_prints_rewrites() {
    let (plane, _turn) = plane().await;
    let admin = plane.client(ADMIN).await;
    rancher_clusters_and_projects(plane, &admin).await;

    // A source project with no destination: exit 1, no ConfigMap, the project named.
    let out = map_projects(
        plane,
        &["--source", "prod-west", "--destination", CLUSTER_ID],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::common::stderr(&out)
    );
    assert!(out.stdout.is_empty(), "{}", crate::common::stdout(&out));
    assert!(crate::common::stderr(&out).contains("p-old01"));

    // Renamed with --map; the rest by name, exactly or ignoring case; Default and System too.
    let rename = ["--map", "Legacy Name=New Name"];
    let mut args = vec!["--source", SOURCE, "--destination", "dr-east", "-o", "json"];
    args.extend(rename);
    let out = map_projects(plane, &args);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = json!({"p-ab12c": "p-xy99z", "p-cd56e": "p-gh34k", "p-dflt1": "p-dflt2",
                      "p-sys01": "p-sys02", "p-old01": "p-new01",
                      "c-7gh2k:p-ab12c": "c-m-4kq8z9rt:p-xy99z"});
    for (src, dst) in want.as_object().unwrap() {
        assert_eq!(report["mappings"][src], *dst, "{src}: {report:#}");
    }
    assert!(report["projectMappings"]
        .as_str()
        .unwrap()
        .contains("p-old01=p-new01"));

    the_printed_configmap_is_the_table_the_webhook_rewrites_with(plane, &admin, &rename).await;

    // --create-missing makes the missing project on the destination; the next run maps it.
    create_all(&admin, &[project(SOURCE, "p-arc01", "Archive")]).await;
    let mut args = vec!["--source", SOURCE, "--destination", CLUSTER_ID];
    args.extend(rename);
    assert_eq!(map_projects(plane, &args).status.code(), Some(1));
    let mut create = args.clone();
    create.push("--create-missing");
    let out = map_projects(plane, &create);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let projects = super::plane::run_ok(plane.kubectl(ADMIN).args([
        "get",
        "projects.management.cattle.io",
        "-n",
        CLUSTER_ID,
        "-o",
        "json",
    ]));
    let projects: Value = serde_json::from_str(&projects).unwrap();
    let archive = projects["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["spec"]["displayName"] == "Archive")
        .expect("the Archive project made on the destination");
    assert_eq!(archive["spec"]["clusterName"], CLUSTER_ID);
    let archive_id = archive["metadata"]["name"].as_str().unwrap();
    assert!(archive_id.starts_with("p-"), "{archive_id}");
    args.extend(["-o", "json"]);
    let out = map_projects(plane, &args);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mappings"]["p-arc01"], archive_id);

    // Two destination projects whose names differ only in case, where the case step is needed:
    // ambiguous, exit 1, both named.
    create_all(&admin, &[project(CLUSTER_ID, "p-gh35k", "PAYMENTS")]).await;
    let out = map_projects(plane, &args);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::common::stderr(&out);
    assert!(err.contains("p-gh34k") && err.contains("p-gh35k"), "{err}");
}
