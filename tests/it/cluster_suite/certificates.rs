//! Certificates the server keeps, through the apiserver: serving pairs renewed and the CA rolled
//! over with short lifetimes while migrated writes go on (the apiserver checks every handshake
//! against the caBundle it holds: none may be refused), `helm upgrade` keeping every caBundle,
//! and the kustomize install, its cluster ID set from an overlay of the user's own, doing the
//! same job as the chart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rancher_remap::pki::CertInfo;
use serde_json::{json, Value};

use super::install::{Destination, Install, CLUSTER_ID, TABLE};
use super::objects::{self, PID};
use super::plane::{plane, run_ok, ADMIN, STORK};
use super::rewrites::{mappings_configmap, until_the_webhook_answers};

fn decoded(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// The server's Secret in `ns`.
async fn certs(admin: &kube::Client, ns: &str) -> Value {
    objects::get(
        admin,
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "rancher-remap-certs", "namespace": ns}}),
    )
    .await
}

/// Sets its flag when dropped: the writers stop before the install goes, even when a test fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_and_a_ca_rollover_under_writes_refuse_none_and_helm_upgrade_keeps_the_bundles() {
    let (plane, _turn) = plane().await;
    let ns = "rr-rollover";
    let Destination {
        install,
        admin,
        stork,
        app,
    } = Destination::helm(plane, ns, &[]).await;
    let app = app.as_str();
    // Serving pairs of 12 s (renewed with a third left: every ~8 s), a CA of 45 s (rolled over
    // 24 s before it ends), a 3 s grace once the new CA is published.
    let short = [
        ("RANCHER_REMAP_CERT_VALIDITY", "12s"),
        ("RANCHER_REMAP_CA_VALIDITY", "45s"),
        ("RANCHER_REMAP_CA_ROLLOVER_GRACE", "3s"),
        ("RANCHER_REMAP_CERT_RESYNC", "1s"),
    ];
    let _r0 = install.start_replica(0, &short).await;
    until_the_webhook_answers(&stork, app).await;
    // Two replicas share one pair.
    let _r1 = install.start_replica(1, &short).await;
    let first = certs(&admin, ns).await;

    // Migrated writes all along, two at a time (stopped before the install goes, even when
    // the test fails).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_writers = StopOnDrop(stop.clone());
    let pace = (2, Duration::from_millis(100));
    let (writes, writers) = super::replicas::writers(&stork, app, "w", pace, &stop);

    // Until a new CA has joined the bundle and, once published, issued the pair in force.
    let (mut serving_pairs, mut widest) = (vec![first["data"]["tls.crt"].clone()], 1);
    crate::common::eventually("a CA rollover", Duration::from_secs(90), async || {
        let now = certs(&admin, ns).await;
        if !serving_pairs.contains(&now["data"]["tls.crt"]) {
            serving_pairs.push(now["data"]["tls.crt"].clone());
        }
        let bundle = decoded(&now["data"]["ca-bundle.crt"]);
        widest = widest.max(bundle.matches("BEGIN CERTIFICATE").count());
        let ca = CertInfo::parse(&decoded(&now["data"]["ca.crt"]), "CA").unwrap();
        let serving = CertInfo::parse(&decoded(&now["data"]["tls.crt"]), "pair").unwrap();
        now["data"]["ca.crt"] != first["data"]["ca.crt"]
            && widest == 2
            && serving.issued_by(&ca)
            && install
                .ca_bundles()
                .iter()
                .all(|b| *b == now["data"]["ca-bundle.crt"])
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let refused = writes.errors.lock().unwrap().clone();
    eprintln!(
        "cluster suite: {} serving pairs and a CA rollover under {} writes, {} refused",
        serving_pairs.len(),
        writes.total(),
        refused.len()
    );
    assert!(serving_pairs.len() >= 3, "renewed {serving_pairs:?} times");
    assert_eq!(writes.wrong.load(Ordering::SeqCst), 0, "stored unrewritten");
    assert!(refused.is_empty(), "{refused:?}");

    // helm upgrade, the new CA published: every caBundle stays the server's, writes pass.
    let before = install.ca_bundles();
    install.helm_upgrade(&["logFormat=text"]);
    assert_eq!(install.ca_bundles(), before);
    until_the_webhook_answers(&stork, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_install_with_the_cluster_id_from_an_overlay_rewrites() {
    let (plane, _turn) = plane().await;
    let ns = "rr-kustomize-overlay";
    // deploy/ as shipped, the namespace changed where its kustomization says to, the server
    // keeping its certificates; the cluster ID set from an overlay of the user's own.
    let tree = tempfile::tempdir().unwrap();
    crate::deploy::copy_tree(&crate::common::repo("deploy"), &tree.path().join("deploy"));
    let k = tree.path().join("deploy/destination/kustomization.yaml");
    let text = std::fs::read_to_string(&k)
        .unwrap()
        .replace(
            "  - ../components/cert-manager\n",
            "  - ../components/server-made-certs\n",
        )
        .replace(
            "\nnamespace: rancher-remap\n",
            &format!("\nnamespace: {ns}\n"),
        );
    std::fs::write(&k, text).unwrap();
    let mine = tree.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(
        mine.join("kustomization.yaml"),
        format!(
            "resources:\n  - ../deploy/destination\npatches:\n  - target: {{kind: ConfigMap, name: rancher-remap-cluster-id}}\n    patch: |-\n      - op: replace\n        path: /data/clusterId\n        value: {CLUSTER_ID}\ntransformers:\n  - ../deploy/transformers/cluster-id\n"
        ),
    )
    .unwrap();
    let render = tree.path().join("install.yaml");
    std::fs::write(
        &render,
        run_ok(plane.kubectl(ADMIN).arg("kustomize").arg(&mine)),
    )
    .unwrap();
    let install = Install::kubectl_apply(plane, ns, &render);
    assert_eq!(
        install.env_var("RANCHER_REMAP_CLUSTER_ID"),
        Some(CLUSTER_ID)
    );
    let admin = plane.client(ADMIN).await;
    let stork = plane.client(STORK).await;
    objects::create(&admin, &mappings_configmap(ns, TABLE), false)
        .await
        .unwrap();
    let app = "rr-kustomize-overlay-app";
    objects::create(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app}}),
        false,
    )
    .await
    .unwrap();
    let _server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&stork, app).await;
    // The ID reached the webhook's Namespace condition: a Namespace claiming the source's
    // project is sent and rewritten, whoever writes it.
    let moved = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "rr-kustomize-overlay-moved", "labels": {PID: "p-ab12c"},
        "annotations": {PID: "c-7gh2k:p-ab12c"}}});
    let stored = objects::create(&admin, &moved, false).await.unwrap();
    assert_eq!(
        stored["metadata"]["annotations"][PID],
        "c-m-4kq8z9rt:p-xy99z"
    );
    assert_eq!(stored["metadata"]["labels"][PID], "p-xy99z");
}
