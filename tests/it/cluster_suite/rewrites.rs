//! What the apiserver stores through a `helm install` of the packaged chart with its defaults
//! (certificates the server keeps): every kind rewritten on create, update and server-side dry
//! run; unmarked objects untouched; Namespaces by content and by migration user.

use std::time::Duration;

use serde_json::{json, Value};

use super::install::{Destination, Install, CLUSTER_ID, TABLE};
use super::objects::{self, every_kind, places_of, MIGRATED, PID, SOURCE_IDS};
use super::plane::{plane, STORK};

/// The mapping ConfigMap `derive` would make for TABLE, in `ns`.
pub fn mappings_configmap(ns: &str, table: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "rancher-remap-mappings", "namespace": ns,
                        "labels": {"rancher-remap.io/mappings": "true"}},
           "data": {"migrationnamespace.remotecluster": table.replace(',', "\n")}})
}

/// The engine's answer for `objects` (the offline `rewrite`, which counts every object as
/// migrated), in the same order.
pub fn offline_rewrite(objects: &[Value]) -> Vec<Value> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = crate::common::run(
        &[
            "rewrite",
            "--project-mappings",
            TABLE,
            "-o",
            "json",
            "-f",
            "-",
        ],
        &list.to_string(),
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    match v["kind"].as_str() {
        Some("List") => v["items"].as_array().unwrap().clone(),
        _ => vec![v],
    }
}

/// Waits until a migrated write in `ns` (not the install's own: the webhooks skip it) passes through the webhook (the server has made its Secret and
/// patched every caBundle: until then the apiserver cannot call it, and refuses the write).
pub async fn until_the_webhook_answers(client: &kube::Client, ns: &str) {
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": ns,
                     "labels": {PID: "p-ab12c"}, "annotations": {MIGRATED: "true"}}});
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = objects::create(client, &probe, true).await;
        match &answer {
            Ok(stored) if stored["metadata"]["labels"][PID] == "p-xy99z" => return,
            _ if std::time::Instant::now() > deadline => {
                panic!("the webhook did not answer through the apiserver: {answer:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Each place in `sent` that held a source ID holds, in `stored`, what the engine put there.
fn assert_rewritten(sent: &Value, stored: &Value, expected: &Value) {
    let kind = sent["kind"].as_str().unwrap();
    let places = places_of(sent, SOURCE_IDS);
    assert!(places.len() >= 2, "{kind}: too few places to check");
    for at in places {
        let want = expected.pointer(&at).unwrap_or(&Value::Null);
        assert_ne!(
            want,
            sent.pointer(&at).unwrap(),
            "{kind}{at}: the engine left it"
        );
        assert_eq!(
            stored.pointer(&at),
            Some(want),
            "{kind}{at}: stored {stored:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rewrites_every_kind_on_create_update_and_dry_run() {
    let (plane, _turn) = plane().await;
    let ns = "rr-rewrites";
    // The chart as `make dist` ships it: packaged.
    let (_package, tgz) = packaged_chart(plane);
    let Destination {
        install,
        admin,
        stork,
        app,
    } = Destination::of(Install::helm_chart(
        plane,
        ns,
        &tgz,
        &[
            &format!("clusterId={CLUSTER_ID}"),
            &format!("migrationUsers={{{STORK}}}"),
        ],
    ))
    .await;
    let app = app.as_str();
    let _server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&stork, app).await;

    server_made_secret_is_every_ca_bundle(&admin, &install, ns).await;

    objects::until_default_service_account(&admin, app).await;

    // CREATE by the migration identity, marked: stored as the engine rewrites it.
    let marked = every_kind(app, true);
    let expected = offline_rewrite(&marked);
    for (sent, want) in marked.iter().zip(&expected) {
        let stored = objects::create(&stork, sent, false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", sent["kind"]));
        assert_rewritten(sent, &stored, want);
        assert_rewritten(sent, &objects::get(&admin, sent).await, want);
    }

    dry_run_answers_rewritten_and_stores_nothing(&admin, &stork).await;

    unmarked_stored_as_sent_then_marked_update_rewritten(&admin, &stork, app).await;

    namespaces_by_content_and_by_migration_user(&admin, &stork).await;
}

/// The chart packaged as `make dist` ships it (the directory, and the .tgz in it).
fn packaged_chart(plane: &super::plane::ControlPlane) -> (tempfile::TempDir, std::path::PathBuf) {
    let package = tempfile::tempdir().unwrap();
    super::plane::run_ok(
        plane
            .helm()
            .arg("package")
            .arg(crate::common::repo("charts/rancher-remap"))
            .arg("-d")
            .arg(package.path()),
    );
    let tgz = std::fs::read_dir(package.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (package, tgz)
}

/// The server made its certificate Secret under the chart's RBAC, and put its CA in every
/// webhook configuration the install has.
async fn server_made_secret_is_every_ca_bundle(admin: &kube::Client, install: &Install, ns: &str) {
    let secret = objects::get(
        admin,
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "rancher-remap-certs", "namespace": ns}}),
    )
    .await;
    for key in ["ca.crt", "tls.crt", "tls.key", "ca-bundle.crt"] {
        assert!(secret["data"][key].is_string(), "Secret lacks {key}");
    }
    let bundles = install.ca_bundles();
    assert!(!bundles.is_empty());
    for (i, bundle) in bundles.iter().enumerate() {
        assert_eq!(
            *bundle, secret["data"]["ca-bundle.crt"],
            "webhook {i}: caBundle"
        );
    }
}

/// Server-side dry run: answered rewritten, nothing stored.
async fn dry_run_answers_rewritten_and_stores_nothing(admin: &kube::Client, stork: &kube::Client) {
    let dry = every_kind("rr-rewrites-dry", true);
    objects::create(
        admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rr-rewrites-dry"}}),
        false,
    )
    .await
    .unwrap();
    for (sent, want) in dry.iter().zip(&offline_rewrite(&dry)).take(3) {
        let answered = objects::create(stork, sent, true).await.unwrap();
        assert_rewritten(sent, &answered, want);
        let name = sent["metadata"]["name"].as_str().unwrap();
        assert!(objects::api(admin, sent)
            .get_opt(name)
            .await
            .unwrap()
            .is_none());
    }
}

/// Unmarked: stored as sent. Then UPDATE with the mark: rewritten.
async fn unmarked_stored_as_sent_then_marked_update_rewritten(
    admin: &kube::Client,
    stork: &kube::Client,
    app: &str,
) {
    let unmarked: Vec<Value> = every_kind(app, false)
        .into_iter()
        .map(|mut o| {
            let name = format!("plain-{}", o["metadata"]["name"].as_str().unwrap());
            o["metadata"]["name"] = json!(name);
            o
        })
        .collect();
    for sent in &unmarked {
        let stored = objects::create(admin, sent, false).await.unwrap();
        for at in places_of(sent, SOURCE_IDS) {
            assert_eq!(stored.pointer(&at), sent.pointer(&at), "{at} changed");
        }
    }
    // (A Pod's spec and a Job's template are immutable: the apiserver refuses a marked UPDATE
    // that rewrites them, as it would the same change made by hand. Stork re-creates instead.)
    for sent in unmarked
        .iter()
        .filter(|o| o["kind"] != "Pod" && o["kind"] != "Job")
    {
        let mut now = objects::get(admin, sent).await;
        now["metadata"]["annotations"][MIGRATED] = json!("true");
        let want = offline_rewrite(std::slice::from_ref(&now)).remove(0);
        let stored = objects::replace(stork, &now).await.unwrap();
        assert_rewritten(sent, &stored, &want);
    }
}

/// SPEC §7: a Namespace claiming a source cluster's project is rewritten whoever writes it; one
/// carrying this cluster's own ID never is; one with the label alone only when a migration user
/// writes it.
async fn namespaces_by_content_and_by_migration_user(admin: &kube::Client, stork: &kube::Client) {
    let namespace = |name: &str, annotation: Option<&str>| {
        let mut meta = json!({"name": name, "labels": {PID: "p-ab12c"}});
        if let Some(a) = annotation {
            meta["annotations"] = json!({PID: a});
        }
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    };
    // (name, its annotation, who writes it, the annotation and label stored)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a kube::Client,
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case; 4] = [
        (
            "rr-moved",
            Some("c-7gh2k:p-ab12c"),
            admin,
            Some("c-m-4kq8z9rt:p-xy99z"),
            "p-xy99z",
        ),
        (
            "rr-own",
            Some("c-m-4kq8z9rt:p-ab12c"),
            stork,
            Some("c-m-4kq8z9rt:p-ab12c"),
            "p-ab12c",
        ),
        ("rr-label-by-stork", None, stork, None, "p-xy99z"),
        ("rr-label-by-admin", None, admin, None, "p-ab12c"),
    ];
    for (name, annotation, who, want_annotation, want_label) in cases {
        let stored = objects::create(who, &namespace(name, annotation), false)
            .await
            .unwrap();
        assert_eq!(stored["metadata"]["labels"][PID], want_label, "{name}");
        assert_eq!(
            stored["metadata"]["annotations"][PID].as_str(),
            want_annotation,
            "{name}"
        );
    }
}
