//! Stork's Namespaces land in the destination's project without anyone naming Stork, and a
//! table that does not fit this cluster is never put in force — each from the outside: the
//! real binary, configured with the environment the chart renders (`clusterId` set, no
//! migration user), following the mapping ConfigMap through the fake API server.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::certificates::{chart_docs, serve_with};
use crate::common::*;
use crate::deploy::chart_server_env;
use crate::fake_api::FakeApi;

/// This (the destination) cluster's Rancher ID, and the source's.
const THIS: &str = "c-m-4kq8z9rt";
const SOURCE: &str = "c-7gh2k";
const GOOD: &str = "p-ab12c=p-xy99z\nc-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z\n";
/// GOOD as derived from the destination-side pair of `storkctl create clusterpair`.
const REVERSED: &str = "p-xy99z=p-ab12c\nc-m-4kq8z9rt:p-xy99z=c-7gh2k:p-ab12c\n";
/// A data key that must never show in a message about the table (only IDs are quoted).
const MARKER_KEY: &str = "SeCrEtMaRkEr.pair";

fn configmap(text: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {MARKER_KEY: text},
    })
}

/// The real binary with the chart's environment for `clusterId=THIS` (no migration user),
/// following the fake API server's mapping ConfigMap.
async fn serve_as_the_chart_installs_it(fake: &FakeApi) -> (ServeProcess, tempfile::TempDir) {
    let env = chart_server_env(&["--set", &format!("clusterId={THIS}")]);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("RANCHER_REMAP_CLUSTER_ID"), Some(THIS));
    assert_eq!(get("RANCHER_REMAP_MIGRATION_USER"), Some(""));
    assert_eq!(
        get("RANCHER_REMAP_MAPPINGS_CONFIGMAP"),
        Some("rancher-remap/rancher-remap-mappings")
    );
    // With the certificates it keeps itself (its RBAC is the real apiserver's to judge:
    // cluster_suite::rewrites).
    let docs = chart_docs(&repo("charts/rancher-remap"));
    serve_with(fake, env, &docs, true).await
}

/// A Namespace review as kube-apiserver sends it, written by `user`.
fn namespace_review(operation: &str, user: &str, annotation: &str, label: &str) -> Value {
    let mut r: Value = serde_json::from_str(&data("create-namespace-by-stork.json")).unwrap();
    let req = &mut r["request"];
    req["operation"] = json!(operation);
    req["userInfo"]["username"] = json!(user);
    req["object"]["metadata"]["annotations"]["field.cattle.io/projectId"] = json!(annotation);
    req["object"]["metadata"]["labels"]["field.cattle.io/projectId"] = json!(label);
    if operation == "UPDATE" {
        req["oldObject"] = req["object"].clone();
        req["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    }
    r
}

/// The Namespace as stored after the webhook's answer: (annotation, label); `None` when the
/// answer carries no patch.
async fn stored(s: &ServeProcess, review: &Value) -> Option<(String, String)> {
    let (status, resp) = post(&s.client(false), &s.url("/mutate"), review).await;
    if status == 503 {
        // Not ready yet (no table): the callers wait for the first table with `eventually`,
        // and a ready server never becomes unready again.
        return None;
    }
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    let patch = resp["response"]["patch"].as_str()?;
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap(),
    )
    .unwrap();
    let mut obj = review["request"]["object"].clone();
    json_patch::patch(&mut obj, &patch).unwrap();
    let meta = &obj["metadata"];
    let at = |m: &Value| m["field.cattle.io/projectId"].as_str().unwrap().to_string();
    Some((at(&meta["annotations"]), at(&meta["labels"])))
}

fn ids(annotation: &str, label: &str) -> Option<(String, String)> {
    Some((annotation.to_string(), label.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_from_the_source_cluster_land_in_the_destination_project_whoever_writes_them() {
    let fake = FakeApi::start().await;
    fake.put(configmap(GOOD));
    let (s, _dir) = serve_as_the_chart_installs_it(&fake).await;
    let foreign = format!("{SOURCE}:p-ab12c");
    eventually("ready", Duration::from_secs(10), async || {
        stored(&s, &namespace_review("CREATE", "u-x", &foreign, "p-ab12c"))
            .await
            .is_some()
    })
    .await;

    // Created by a user named nowhere (an opaque token, an exec plugin, Rancher's proxy).
    let want = ids(&format!("{THIS}:p-xy99z"), "p-xy99z");
    for user in [
        "u-named-nowhere",
        "system:serviceaccount:kube-system:stork-admin",
    ] {
        let created = stored(&s, &namespace_review("CREATE", user, &foreign, "p-ab12c")).await;
        assert_eq!(created, want, "CREATE by {user}");
    }
    // A later UPDATE of a Namespace still carrying the source's IDs (missed once, fixed now).
    let updated = stored(
        &s,
        &namespace_review("UPDATE", "u-alice", &foreign, "p-ab12c"),
    )
    .await;
    assert_eq!(updated, want, "UPDATE");

    // A custom resource named Namespace in another group is not a Namespace: its annotation
    // makes it no migration (Stork's migrated annotation would).
    let mut custom = namespace_review("CREATE", "u-alice", &foreign, "p-ab12c");
    custom["request"]["kind"]["group"] = json!("example.com");
    custom["request"]["resource"]["group"] = json!("example.com");
    custom["request"]["object"]["apiVersion"] = json!("example.com/v1");
    assert_eq!(stored(&s, &custom).await, None, "a custom Namespace");

    // This cluster's own Namespaces are never touched, whoever writes them and whatever else
    // they carry.
    for (annotation, label) in [
        (format!("{THIS}:p-xy99z"), "p-xy99z"),
        (format!("{THIS}:p-other"), "p-ab12c"),
    ] {
        for user in ["u-alice", "system:serviceaccount:cattle-system:rancher"] {
            let mut r = namespace_review("CREATE", user, &annotation, label);
            // Even marked migrated: only the rule for this cluster's own Namespaces keeps
            // them as they are.
            r["request"]["object"]["metadata"]["annotations"]
                ["stork.libopenstorage.org/migrated"] = json!("true");
            assert_eq!(
                stored(&s, &r).await,
                None,
                "{annotation} / {label} by {user}"
            );
        }
    }

    // The table edited live: the next Namespace follows the new table.
    let edited = "p-ab12c=p-new11\nc-7gh2k:p-ab12c=c-m-4kq8z9rt:p-new11\n";
    fake.put(configmap(edited));
    let want = ids(&format!("{THIS}:p-new11"), "p-new11");
    eventually("the edited table", Duration::from_secs(10), async || {
        stored(&s, &namespace_review("CREATE", "u-y", &foreign, "p-ab12c")).await == want
    })
    .await;
    let updated = stored(&s, &namespace_review("UPDATE", "u-z", &foreign, "p-ab12c")).await;
    assert_eq!(updated, want);
}

/// Asserts a message about a table that does not fit names both clusters and nothing else of
/// the input.
fn names_both_clusters(what: &str, text: &str) {
    assert!(
        text.contains(THIS) && text.contains(SOURCE) && text.contains("derive --reverse"),
        "{what}: {text}"
    );
    assert!(
        !text.contains(MARKER_KEY),
        "{what} quotes the data key: {text}"
    );
}

#[test]
fn a_reversed_table_does_not_start_the_server() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let reversed = "p-xy99z=p-ab12c,c-m-4kq8z9rt:p-xy99z=c-7gh2k:p-ab12c";
    for (what, flags, env) in [
        ("flag", vec!["--project-mappings", reversed], vec![]),
        (
            "environment",
            vec![],
            vec![("RANCHER_REMAP_PROJECT_MAPPINGS", reversed)],
        ),
    ] {
        let out = serve_command(env!("CARGO_BIN_EXE_rancher-remap"), dir.path())
            .args(&flags)
            .envs(env)
            .env("RANCHER_REMAP_CLUSTER_ID", THIS)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains(&format!("maps cluster {THIS} (this cluster")),
            "{e}"
        );
        names_both_clusters(what, &e);
    }
    // A cluster mapped onto itself, whatever the configuration.
    let out = serve_command(env!("CARGO_BIN_EXE_rancher-remap"), dir.path())
        .args(["--project-mappings", "c-1:p-a=c-1:p-b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("onto itself"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_table_is_refused_live_and_the_last_good_one_stays() {
    let fake = FakeApi::start().await;
    fake.put(configmap(GOOD));
    let (mut s, _dir) = serve_as_the_chart_installs_it(&fake).await;
    let foreign = format!("{SOURCE}:p-ab12c");
    let want = ids(&format!("{THIS}:p-xy99z"), "p-xy99z");
    let ns = namespace_review("CREATE", "u-x", &foreign, "p-ab12c");
    eventually("the first table", Duration::from_secs(10), async || {
        stored(&s, &ns).await == want
    })
    .await;
    fake.put(configmap(REVERSED));
    eventually(
        "the MappingsRejected Event",
        Duration::from_secs(10),
        async || {
            fake.events().iter().any(|e| {
                e["reason"] == "MappingsRejected"
                    && e["note"].as_str().is_some_and(|n| n.contains("reversed"))
            })
        },
    )
    .await;
    let events = fake.events();
    let note = events
        .iter()
        .find(|e| e["reason"] == "MappingsRejected")
        .and_then(|e| e["note"].as_str())
        .unwrap();
    names_both_clusters("the Event", note);
    assert!(note.contains("keeping the last good table"), "{note}");
    let metrics = s.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(stored(&s, &ns).await, want, "the last good table stays");
    // Another cluster's table (destinations elsewhere) is refused the same way.
    fake.put(configmap("c-7gh2k:p-ab12c=c-elsewhere:p-xy99z\n"));
    eventually("the second refusal", Duration::from_secs(10), async || {
        fake.events().iter().any(|e| {
            e["note"]
                .as_str()
                .is_some_and(|n| n.contains("c-elsewhere") && n.contains("another cluster"))
        })
    })
    .await;
    assert_eq!(stored(&s, &ns).await, want);
    assert!(s.terminate().success());
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("mapping table rejected"), "{log}");
    assert!(!log.contains(MARKER_KEY), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_check_refuse_a_reversed_mapping_configmap() {
    let fake = FakeApi::start().await;
    fake.put(configmap(GOOD));
    let (s, _dir) = serve_as_the_chart_installs_it(&fake).await;
    let mut review: Value = serde_json::from_str(&data("create-namespace-by-stork.json")).unwrap();
    let req = &mut review["request"];
    req["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    req["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
    req["name"] = json!("rancher-remap-mappings");
    req["namespace"] = json!("rancher-remap");
    req["object"] = configmap(REVERSED);
    let (_, resp) = post(&s.client(false), &s.url("/validate"), &review).await;
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    let message = resp["response"]["status"]["message"].as_str().unwrap();
    names_both_clusters("/validate", message);
    // The right way round is allowed.
    review["request"]["object"] = configmap(GOOD);
    let (_, resp) = post(&s.client(false), &s.url("/validate"), &review).await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");

    // Offline, before it is applied.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cm.json");
    std::fs::write(&file, configmap(REVERSED).to_string()).unwrap();
    let path = file.to_str().unwrap();
    let out = run(&["check", "--cluster-id", THIS, "-f", path], "");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    names_both_clusters("check", &stdout(&out));
    // Without the cluster ID there is nothing to hold it against.
    assert!(run(&["check", "-f", path], "").status.success());
    assert!(run(&["check", "--cluster-id", SOURCE, "-f", path], "")
        .status
        .success());
}

/// The install flow: the cluster ID `derive` prints is the one its table fits; the table
/// derived the wrong way round (the destination-side pair taken as it is) does not fit it.
#[test]
fn derive_prints_the_cluster_id_its_table_fits() {
    let pair = repo("deploy/examples/clusterpair.yaml");
    let pair = pair.to_str().unwrap();
    let out = run(&["derive", "-f", pair], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    let id = said
        .split("--set clusterId=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no install value in: {said}"))
        .to_string();
    assert_eq!(id, THIS);
    let dir = tempfile::tempdir().unwrap();
    let derived = dir.path().join("cm.yaml");
    std::fs::write(&derived, stdout(&out)).unwrap();
    let ok = run(
        &[
            "check",
            "--cluster-id",
            &id,
            "-f",
            derived.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok.status.success(), "{}", stdout(&ok));

    let out = run(&["derive", "--reverse", "-f", pair], "");
    let reversed = dir.path().join("reversed.yaml");
    std::fs::write(&reversed, stdout(&out)).unwrap();
    let refused = run(
        &[
            "check",
            "--cluster-id",
            &id,
            "-f",
            reversed.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("reversed"),
        "{}",
        stdout(&refused)
    );
}
