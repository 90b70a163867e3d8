//! The mapping ConfigMap through the apiserver: a live edit applies to the next write, a table
//! the validating webhook sees and refuses never lands, and a bad table that lands anyway keeps
//! the last good one in force and posts a MappingsRejected Event under the chart's RBAC.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{json, Value};

use super::install::{Destination, Install, CLUSTER_ID, TABLE};
use super::objects::{self, MIGRATED, PID};
use super::plane::{plane, ADMIN};
use super::rewrites::{mappings_configmap, until_the_webhook_answers};
use crate::common::eventually;

/// What a migrated ConfigMap's project label becomes (server-side dry run).
async fn rewritten(client: &kube::Client, ns: &str) -> Option<String> {
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": ns,
                     "labels": {PID: "p-ab12c"}, "annotations": {MIGRATED: "true"}}});
    let stored = objects::create(client, &probe, true).await.ok()?;
    stored["metadata"]["labels"][PID]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_configmap_is_followed_checked_and_reported() {
    let (plane, _turn) = plane().await;
    let ns = "rr-mappings";
    let Destination {
        install,
        admin,
        stork,
        app,
    } = Destination::helm(plane, ns, &[]).await;
    let app = app.as_str();
    let table = mappings_configmap(ns, TABLE);
    let server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&stork, app).await;

    // A live edit applies to the next writes.
    let edited = "c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-zz000,p-ab12c=p-zz000";
    let mut now = objects::get(&admin, &table).await;
    now["data"] = mappings_configmap(ns, edited)["data"].clone();
    objects::replace(&admin, &now).await.unwrap();
    eventually("the edited table", Duration::from_secs(30), async || {
        rewritten(&stork, app).await.as_deref() == Some("p-zz000")
    })
    .await;

    // A reversed table (its sources name this cluster) is refused by the validating webhook
    // before it lands.
    let reversed = "c-m-4kq8z9rt:p-xy99z=c-7gh2k:p-ab12c,p-xy99z=p-ab12c";
    let mut now = objects::get(&admin, &table).await;
    now["data"] = mappings_configmap(ns, reversed)["data"].clone();
    let refused = objects::replace(&admin, &now).await.unwrap_err();
    assert!(
        refused.to_string().contains(CLUSTER_ID),
        "refused without naming this cluster: {refused}"
    );

    // A bad table that lands anyway (no label, so no webhook looks at it): the last good table
    // stays, and a Warning Event says why.
    objects::api(&admin, &table)
        .delete("rancher-remap-mappings", &DeleteParams::default())
        .await
        .unwrap();
    let mut chain = mappings_configmap(ns, "p-ab12c=p-xy99z,p-xy99z=p-q1234");
    chain["metadata"]["labels"] = json!({});
    objects::create(&admin, &chain, false).await.unwrap();
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    let mut notes = Vec::new();
    eventually(
        "a MappingsRejected Event",
        Duration::from_secs(30),
        async || {
            notes = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("MappingsRejected"))
                .filter_map(|e| e.note)
                .collect();
            !notes.is_empty()
        },
    )
    .await;
    assert!(
        notes.iter().any(|n| n.contains("p-xy99z")),
        "the Event does not name the entry: {notes:?}"
    );
    assert_eq!(rewritten(&stork, app).await.as_deref(), Some("p-zz000"));
    let ready = reqwest::get(format!("http://{}/readyz", server.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the last good table keeps it ready");
    drop(install);
}

/// Stork's ClusterPair CRD has no schema: anything is stored unless the webhook refuses it.
fn stork_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterpairs.stork.libopenstorage.org"},
        "spec": {"group": "stork.libopenstorage.org", "scope": "Namespaced",
            "names": {"kind": "ClusterPair", "plural": "clusterpairs", "singular": "clusterpair",
                      "listKind": "ClusterPairList"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// The example ClusterPair with `edit` applied, in `ns`.
fn clusterpair(ns: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let text =
        std::fs::read_to_string(crate::common::repo("deploy/examples/clusterpair.yaml")).unwrap();
    let mut pair: Value = serde_saphyr::from_str(&text).unwrap();
    pair["metadata"] = json!({"name": "remotecluster", "namespace": ns});
    pair.as_object_mut().unwrap().remove("status");
    edit(&mut pair);
    pair
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_install_refuses_a_clusterpair_that_cannot_work() {
    let (plane, _turn) = plane().await;
    let admin = plane.client(ADMIN).await;
    objects::create(&admin, &stork_crd(), false).await.unwrap();
    super::plane::run_ok(plane.kubectl(ADMIN).args([
        "wait",
        "--for=condition=Established",
        "crd/clusterpairs.stork.libopenstorage.org",
        "--timeout=30s",
    ]));
    let ns = "rr-source";
    let install = Install::helm(plane, ns, &["role=source"]);
    let app = "rr-source-app";
    objects::create(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app}}),
        false,
    )
    .await
    .unwrap();
    let _server = install.start_replica(0, &[]).await;

    const MARKER: &str = "MARKER-TOKEN-0d1e2a3b4c";
    let bad = clusterpair(app, |p| {
        p["spec"]["config"]["users"]["stork-migrator"]["token"] = json!(MARKER);
        p["spec"]["config"]["clusters"]["destination"]["server"] = json!("destination:6443");
        p["spec"]["platformOptions"]["rancher"]["projectMappings"]["p-q1234"] = json!("p-ab12c");
    });
    // Until the server has made its certificate and published its CA, the apiserver cannot
    // call it (and refuses every ClusterPair write, failurePolicy Fail): wait for its own words.
    let mut refusal = String::new();
    eventually(
        "the webhook's refusal",
        Duration::from_secs(60),
        async || {
            refusal = match objects::create(&admin, &bad, true).await {
                Ok(_) => panic!("a ClusterPair that cannot work was accepted"),
                Err(e) => e.to_string(),
            };
            refusal.contains("spec.config")
        },
    )
    .await;
    assert!(refusal.contains("server"), "{refusal}");
    assert!(refusal.contains("projectMappings"), "{refusal}");
    assert!(!refusal.contains(MARKER), "the refusal quotes the token");
    // What it refuses is not stored; the example pair is.
    assert!(objects::create(&admin, &bad, false).await.is_err());
    let good = clusterpair(app, |_| {});
    objects::create(&admin, &good, false)
        .await
        .unwrap_or_else(|e| panic!("the example ClusterPair was refused: {e}"));
}
