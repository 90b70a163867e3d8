//! The server's RBAC as the apiserver enforces it: the chart's Roles with one rule less break
//! what that rule is for, each in its own way (said in the log, or on exit); the kustomize
//! install's Roles are enough for everything the server does (its ConfigMap followed, its
//! Secret made, every caBundle patched, a MappingsRejected Event posted).

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{json, Value};

use super::doctor::apply;
use super::install::{Install, CLUSTER_ID, TABLE};
use super::objects;
use super::plane::{plane, run_ok, ControlPlane, ADMIN, SERVICE, STORK};
use super::rewrites::{mappings_configmap, until_the_webhook_answers};
use crate::common::{eventually, stderr, ServeProcess};

/// Role `name` in `ns` as stored, without what the apiserver adds.
fn role(plane: &ControlPlane, ns: &str, name: &str) -> Value {
    let mut role: Value = serde_json::from_str(&run_ok(
        plane
            .kubectl(ADMIN)
            .args(["get", "role", name, "-n", ns, "-o", "json"]),
    ))
    .unwrap();
    let meta = role["metadata"].as_object_mut().unwrap();
    for field in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
    ] {
        meta.remove(field);
    }
    role
}

/// Whether the install's ServiceAccount may `verb` `what` in its namespace, as the apiserver
/// judges it now.
fn can_i(install: &Install, verb: &str, what: &str) -> bool {
    let out = install
        .plane
        .kubectl(ADMIN)
        .args(["auth", "can-i", verb, what, "-n", &install.ns])
        .arg(format!(
            "--as=system:serviceaccount:{}:{SERVICE}",
            install.ns
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Applies `edited` and waits until the apiserver judges by it.
async fn with_role(install: &Install, edited: &Value, verb: &str, what: &str, allowed: bool) {
    apply(install.plane, std::slice::from_ref(edited));
    eventually(
        &format!("{verb} {what} allowed: {allowed}"),
        Duration::from_secs(15),
        async || can_i(install, verb, what) == allowed,
    )
    .await;
}

async fn log_says(server: &ServeProcess, what: &str, says: &[&str]) {
    eventually(what, Duration::from_secs(20), async || {
        let log = server.log.lock().unwrap().clone();
        says.iter().all(|s| log.contains(s))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_role_without_one_rule_breaks_what_the_rule_is_for() {
    let (plane, _turn) = plane().await;
    let ns = "rr-rbac";
    let install = Install::helm(plane, ns, &[&format!("clusterId={CLUSTER_ID}")]);
    let sa = format!("system:serviceaccount:{ns}:{SERVICE}");
    let certs = role(plane, ns, "rancher-remap-certs");
    let reader = role(plane, ns, "rancher-remap-mappings-reader");
    let admin = plane.client(ADMIN).await;
    objects::create(&admin, &mappings_configmap(ns, TABLE), false)
        .await
        .unwrap();

    the_server_cannot_make_its_certificate(&install, &certs, ns).await;

    // Without watch on its ConfigMap: the list was allowed, so the first table is in force;
    // every later change is missed, and the server says why.
    let mut less = reader.clone();
    less["rules"][0]["verbs"] = json!(["get", "list"]);
    let says = [
        "watching the mapping ConfigMap failed",
        "403",
        &sa,
        "cannot watch resource",
    ];
    drop(replica_without(&install, &less, "watch", &says).await);

    // A Role naming another ConfigMap: no table, never ready.
    let mut less = reader.clone();
    less["rules"][0]["resourceNames"] = json!(["rancher-remap-mapping"]);
    let says = [
        "rancher-remap-mappings",
        "is forbidden",
        "cannot list resource",
    ];
    let server = replica_without(&install, &less, "list", &says).await;
    let ready = reqwest::get(format!("http://{}/readyz", server.admin))
        .await
        .unwrap();
    assert_ne!(ready.status(), 200, "ready without a table");
    drop(server);

    // Without create on Events: a rejected table cannot be reported.
    let mut less = reader.clone();
    less["rules"][1]["verbs"] = json!(["get"]);
    with_role(&install, &less, "create", "events.events.k8s.io", false).await;
    with_role(
        &install,
        &less,
        "watch",
        "configmap/rancher-remap-mappings",
        true,
    )
    .await;
    let server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&plane.client(STORK).await, ns_app(plane, ns).await).await;
    land_a_bad_table(&admin, ns).await;
    log_says(
        &server,
        "the Event refused",
        &[
            "could not post a Warning Event",
            "cannot create resource",
            "in API group",
            "events.k8s.io",
        ],
    )
    .await;
    drop(server);
    drop(install);
}

/// Without create on Secrets, the server cannot make its certificate: it exits saying so.
async fn the_server_cannot_make_its_certificate(install: &Install, certs: &Value, ns: &str) {
    let mut less = certs.clone();
    let gone = less["rules"].as_array_mut().unwrap().pop().unwrap();
    assert_eq!(gone["verbs"], json!(["create"]));
    with_role(install, &less, "create", "secrets", false).await;
    let out = install.replica_command(0, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Secret {ns}/rancher-remap-certs")) && err.contains("forbidden"),
        "{err}"
    );
    with_role(install, certs, "create", "secrets", true).await;
}

/// A replica started under `role`, which refuses `verb` on the mapping ConfigMap, once its log
/// says all of `says`.
async fn replica_without(
    install: &Install,
    role: &Value,
    verb: &str,
    says: &[&str],
) -> ServeProcess {
    let what = "configmap/rancher-remap-mappings";
    with_role(install, role, verb, what, false).await;
    let server = install.start_replica(0, &[]).await;
    log_says(&server, &format!("{verb} {what} refused, logged"), says).await;
    server
}

/// Replaces the mapping ConfigMap in `ns` by a bad table that lands anyway (no label, so no
/// webhook looks at it): the server must reject it and say so in an Event.
async fn land_a_bad_table(admin: &kube::Client, ns: &str) {
    objects::api(admin, &mappings_configmap(ns, TABLE))
        .delete("rancher-remap-mappings", &DeleteParams::default())
        .await
        .unwrap();
    let mut chain = mappings_configmap(ns, "p-ab12c=p-xy99z,p-xy99z=p-q1234");
    chain["metadata"]["labels"] = json!({});
    objects::create(admin, &chain, false).await.unwrap();
}

/// A namespace of `ns`'s own for migrated writes (the install's own is skipped).
async fn ns_app(plane: &ControlPlane, ns: &str) -> &'static str {
    let app: &'static str = Box::leak(format!("{ns}-app").into_boxed_str());
    objects::create(
        &plane.client(ADMIN).await,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app}}),
        false,
    )
    .await
    .unwrap();
    app
}

/// The kustomize install (deploy/OVERLAY with the server-made-certs component, as the
/// operators' guide says to switch) into `ns`, applied with kubectl, with the suite's cluster ID.
fn kustomize_install(plane: &'static ControlPlane, overlay: &str, ns: &str) -> Install {
    let docs = crate::certificates::kustomize_server_made(overlay, ns);
    // In the suite's directory: the install's uninstall deletes what it names.
    let render = plane.dir.join(format!("{ns}.render.json"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    // The suite's table is for CLUSTER_ID.
    std::fs::write(&render, list.to_string().replace("c-m-dst01", CLUSTER_ID)).unwrap();
    Install::kubectl_apply(plane, ns, &render)
}

async fn secret_bundle(admin: &kube::Client, ns: &str) -> Option<String> {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "rancher-remap-certs", "namespace": ns}});
    let stored = objects::api(admin, &secret)
        .get_opt("rancher-remap-certs")
        .await
        .unwrap()?;
    serde_json::to_value(stored).unwrap()["data"]["ca-bundle.crt"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_destination_roles_are_enough_for_everything_the_server_does() {
    let (plane, _turn) = plane().await;
    let ns = "rr-kustomize";
    let install = kustomize_install(plane, "destination", ns);
    let admin = plane.client(ADMIN).await;
    let stork = plane.client(STORK).await;
    objects::create(&admin, &mappings_configmap(ns, TABLE), false)
        .await
        .unwrap();
    let app = ns_app(plane, ns).await;
    let server = install.start_replica(0, &[]).await;
    // Its Secret made and every caBundle patched (else the apiserver could not call it).
    until_the_webhook_answers(&stork, app).await;
    let bundle = secret_bundle(&admin, ns).await.expect("the Secret");
    eventually("every caBundle", Duration::from_secs(15), async || {
        install
            .ca_bundles()
            .iter()
            .all(|b| b.as_str() == Some(bundle.as_str()))
    })
    .await;

    // Its ConfigMap followed, and a bad table reported in an Event.
    land_a_bad_table(&admin, ns).await;
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    eventually(
        "a MappingsRejected Event",
        Duration::from_secs(20),
        async || {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("MappingsRejected"))
        },
    )
    .await;
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains("forbidden"), "{log}");
    drop(server);
    drop(install);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_source_roles_are_enough_for_its_certificates() {
    let (plane, _turn) = plane().await;
    let ns = "rr-kustomize-source";
    let install = kustomize_install(plane, "source", ns);
    let admin = plane.client(ADMIN).await;
    let server = install.start_replica(0, &[]).await;
    let mut bundle = None;
    eventually("the Secret", Duration::from_secs(20), async || {
        bundle = secret_bundle(&admin, ns).await;
        bundle.is_some()
    })
    .await;
    let bundle = bundle.unwrap();
    eventually("every caBundle", Duration::from_secs(15), async || {
        install
            .ca_bundles()
            .iter()
            .all(|b| b.as_str() == Some(bundle.as_str()))
    })
    .await;
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains("forbidden"), "{log}");
    drop(server);
    drop(install);
}
