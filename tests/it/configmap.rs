//! `--mappings-configmap`: the real kube client and kube-runtime watcher, over HTTP, against the
//! in-process fake API server. Polls with deadlines; no fixed sleeps.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use rancher_remap::source::ConfigMapRef;

use crate::common::*;
use crate::fake_api::FakeApi;

const STORK: &str = "system:serviceaccount:kube-system:stork-migrator";

fn at() -> ConfigMapRef {
    "rancher-remap/rancher-remap-mappings".parse().unwrap()
}

/// A mapping ConfigMap as `derive` writes it.
fn configmap(mappings: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "rancher-remap-mappings", "namespace": "rancher-remap",
            "labels": {"rancher-remap.io/mappings": "true"},
            "annotations": {"rancher-remap.io/migration-users": STORK}
        },
        "data": {"migrationnamespace.remotecluster": mappings}
    })
}

fn mappings_to(dst: &str) -> String {
    format!("p-ab12c={dst}\nc-7gh2k:p-ab12c=c-m-4kq8z9rt:{dst}\n")
}

/// The destination project the server writes for the Namespace Stork creates (`None`: no patch).
async fn namespace_project(s: &TestServer) -> Option<String> {
    let c = s.client(&s.ca, false);
    let review: Value = serde_json::from_str(&data("create-namespace-by-stork.json")).unwrap();
    let resp: Value = c
        .post(s.url("/mutate"))
        .json(&review)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let b64 = resp["response"]["patch"].as_str()?;
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    patch
        .as_array()?
        .iter()
        .find(|op| op["path"] == "/metadata/labels/field.cattle.io~1projectId")
        .and_then(|op| op["value"].as_str().map(str::to_string))
}

async fn ready(s: &TestServer) -> bool {
    reqwest::get(s.admin_url("/readyz"))
        .await
        .map(|r| r.status().as_u16() == 200)
        .unwrap_or(false)
}

async fn in_force(s: &TestServer, dst: &str, what: &str) -> Duration {
    let started = Instant::now();
    eventually(what, Duration::from_secs(10), async || {
        namespace_project(s).await.as_deref() == Some(dst)
    })
    .await;
    started.elapsed()
}

fn events_with(fake: &FakeApi, reason: &str) -> Vec<Value> {
    fake.events()
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_followed_live_through_dropped_watches_and_410() {
    let fake = FakeApi::start().await;
    fake.put(configmap(&mappings_to("p-xy99z")));
    let s = start_watching(fake.client(), at(), crate::common::destination()).await;

    // First table: ready, and the ConfigMap's migration-users annotation is in force (the
    // Namespace carries no migrated annotation; it is in scope because Stork wrote it).
    eventually("ready", Duration::from_secs(10), async || ready(&s).await).await;
    in_force(&s, "p-xy99z", "first table").await;
    assert_eq!(fake.lists(), 1);

    // A change is in force as soon as the watch event arrives.
    fake.put(configmap(&mappings_to("p-new11")));
    let took = in_force(&s, "p-new11", "a modified ConfigMap").await;
    eprintln!("change in force after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A dropped watch connection: the watcher resumes from its resourceVersion.
    let watches = fake.watches();
    fake.drop_watches();
    eventually("a new watch", Duration::from_secs(10), async || {
        fake.watches() > watches
    })
    .await;
    fake.put(configmap(&mappings_to("p-new22")));
    in_force(&s, "p-new22", "a change after a dropped watch").await;

    // 410 Gone: the watcher lists again, and the table is what the API holds.
    let lists = fake.lists();
    fake.expire();
    fake.put(configmap(&mappings_to("p-new33")));
    in_force(&s, "p-new33", "a change after 410 Gone").await;
    assert!(fake.lists() > lists, "no relist after 410");

    // A rejected version keeps the table in force, is counted, and is reported as an Event
    // naming the offending entries.
    fake.put(configmap("p-ab12c=p-one1\np-ab12c=p-two2\n"));
    eventually("a Warning Event", Duration::from_secs(10), async || {
        !events_with(&fake, "MappingsRejected").is_empty()
    })
    .await;
    let ev = &events_with(&fake, "MappingsRejected")[0];
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["regarding"]["kind"], "ConfigMap");
    assert_eq!(ev["regarding"]["name"], "rancher-remap-mappings");
    assert_eq!(ev["regarding"]["namespace"], "rancher-remap");
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains("p-ab12c=p-one1") && note.contains("p-ab12c=p-two2"),
        "{note}"
    );
    assert!(note.contains("keeping the last good table"), "{note}");
    assert_eq!(namespace_project(&s).await.as_deref(), Some("p-new33"));
    assert!(
        metric(
            &s.metrics().await,
            "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}"
        )
        .unwrap()
            >= 1.0
    );

    // Deleted: keep the last good table, stay ready, warn.
    fake.delete(&configmap(""));
    eventually(
        "a MappingsMissing Event",
        Duration::from_secs(10),
        async || !events_with(&fake, "MappingsMissing").is_empty(),
    )
    .await;
    assert!(ready(&s).await);
    assert_eq!(namespace_project(&s).await.as_deref(), Some("p-new33"));
    assert_eq!(
        metric(
            &s.metrics().await,
            "rancher_remap_mapping_table_reloads_total{result=\"missing\"}"
        ),
        Some(1.0)
    );

    // Created again: in force.
    fake.put(configmap(&mappings_to("p-back44")));
    in_force(&s, "p-back44", "a re-created ConfigMap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_at_start_are_retried_with_backoff() {
    let fake = FakeApi::start().await;
    fake.put(configmap(&mappings_to("p-xy99z")));
    fake.fail_lists(2);
    let s = start_watching(fake.client(), at(), crate::common::destination()).await;
    assert!(!ready(&s).await, "ready before any table");
    eventually(
        "ready after the API recovers",
        Duration::from_secs(30),
        async || ready(&s).await,
    )
    .await;
    in_force(&s, "p-xy99z", "the table after retries").await;
    // Two failures and one success: retried with backoff, not in a loop.
    assert_eq!(fake.lists(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_configmap_leaves_the_server_not_ready_until_it_appears() {
    let fake = FakeApi::start().await;
    let s = start_watching(fake.client(), at(), crate::common::destination()).await;
    eventually(
        "a MappingsMissing Event",
        Duration::from_secs(10),
        async || !events_with(&fake, "MappingsMissing").is_empty(),
    )
    .await;
    assert!(!ready(&s).await);
    let note = events_with(&fake, "MappingsMissing")[0]["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("not ready"), "{note}");

    // A bad first version: still not ready.
    fake.put(configmap("p-ab12c"));
    eventually(
        "a MappingsRejected Event",
        Duration::from_secs(10),
        async || !events_with(&fake, "MappingsRejected").is_empty(),
    )
    .await;
    assert!(!ready(&s).await);

    fake.put(configmap(&mappings_to("p-xy99z")));
    eventually("ready", Duration::from_secs(10), async || ready(&s).await).await;
    in_force(&s, "p-xy99z", "the first good table").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_re_create_between_two_watches_is_seen_as_both() {
    let fake = FakeApi::start().await;
    fake.put(configmap(&mappings_to("p-xy99z")));
    let s = start_watching(fake.client(), at(), crate::common::destination()).await;
    in_force(&s, "p-xy99z", "first table").await;

    // The watch connection drops; while the watcher is between two watches the ConfigMap is
    // deleted and created again. Resuming from its resourceVersion, it must see both.
    fake.hold_watches();
    fake.drop_watches();
    eventually(
        "the watcher to watch again",
        Duration::from_secs(10),
        async || fake.held_watches() >= 1,
    )
    .await;
    fake.delete(&configmap(""));
    fake.put(configmap(&mappings_to("p-new11")));
    fake.release_watches();
    in_force(&s, "p-new11", "the re-created ConfigMap").await;
    eventually(
        "a MappingsMissing Event for the deletion",
        Duration::from_secs(10),
        async || !events_with(&fake, "MappingsMissing").is_empty(),
    )
    .await;
    assert_eq!(
        fake.lists(),
        1,
        "resumed from its resourceVersion, not listed again"
    );
}
