//! The fake API server itself keeps the protocol the client code is tested against: replay,
//! bookmarks, timeouts, whole field selectors, Event rules, 410 for a watcher that falls behind,
//! JSON patch with a resourceVersion test, metadata-only lists and gets.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::fake_api::FakeApi;

fn cm(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns}, "data": {"k": name}})
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every line of a response until it ends (at most 10 s).
async fn lines(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.unwrap());
        }
    })
    .await
    .expect("the watch ended");
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// A plain HTTP client (on the process's one rustls provider, which reqwest insists on).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn get(fake: &FakeApi, path_and_query: &str) -> reqwest::Response {
    http()
        .get(format!("{}{path_and_query}", fake.url()))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_watch_replays_every_change_after_its_resource_version() {
    let fake = FakeApi::start().await;
    let from = rv(&fake.put(cm("a", "one")));
    fake.delete(&cm("a", "one"));
    fake.put(cm("a", "one"));
    fake.put(cm("b", "one"));
    fake.put(cm("a", "two"));
    let events = lines(
        get(
            &fake,
            &format!("/api/v1/namespaces/a/configmaps?watch=true&resourceVersion={from}&fieldSelector=metadata.name%3Done&timeoutSeconds=1"),
        )
        .await,
    )
    .await;
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["namespace"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("DELETED", "a", "one"), ("ADDED", "a", "one")]);

    // Older than the last compaction: 410, then the end.
    fake.expire();
    let events = lines(
        get(
            &fake,
            &format!("/api/v1/configmaps?watch=true&resourceVersion={from}"),
        )
        .await,
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
}

#[tokio::test]
async fn bookmarks_only_when_asked_and_watches_end_at_their_timeout() {
    let fake = FakeApi::start().await;
    let from = rv(&fake.put(cm("a", "one")));
    let started = Instant::now();
    let with = get(
        &fake,
        &format!("/api/v1/namespaces/a/configmaps?watch=true&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds=1"),
    )
    .await;
    let without = get(
        &fake,
        &format!(
            "/api/v1/namespaces/a/configmaps?watch=true&resourceVersion={from}&timeoutSeconds=1"
        ),
    )
    .await;
    fake.bookmark();
    let (with, without) = (lines(with).await, lines(without).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "ended early: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "not ended at the timeout: {took:?}"
    );
    assert!(without.is_empty(), "{without:?}");
    assert!(!with.is_empty());
    for e in &with {
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(e["object"]["kind"], "ConfigMap");
        assert!(rv(&e["object"]) >= from);
    }
}

#[tokio::test]
async fn field_selectors_and_namespaces_are_checked_whole() {
    let fake = FakeApi::start().await;
    for (ns, name) in [("a", "one"), ("a", "two"), ("b", "one")] {
        fake.put(cm(ns, name));
    }
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let list = |q: &'static str| {
        let fake = fake.clone();
        async move { get(&fake, q).await.json::<Value>().await.unwrap() }
    };
    assert_eq!(
        names(list("/api/v1/namespaces/a/configmaps").await),
        ["a/one", "a/two"]
    );
    assert_eq!(
        names(
            list("/api/v1/configmaps?fieldSelector=metadata.name%3Done,metadata.namespace%3Db")
                .await
        ),
        ["b/one"]
    );
    assert_eq!(
        names(list("/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name!%3Done").await),
        ["a/two"]
    );
    let bad = get(&fake, "/api/v1/configmaps?fieldSelector=data.k%3Done").await;
    assert_eq!(bad.status(), 400);
    // Built-in types' items carry no kind, as kube-apiserver sends them.
    let page = list("/api/v1/configmaps?limit=2").await;
    assert!(page["items"][0].get("kind").is_none());
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    assert!(page["metadata"]["continue"].is_string());
}

#[tokio::test]
async fn events_need_their_fields_and_a_free_name() {
    let fake = FakeApi::start().await;
    let url = format!("{}/apis/events.k8s.io/v1/namespaces/a/events", fake.url());
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "cm.1", "namespace": "a"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning", "reason": "R",
        "action": "A", "note": "n", "reportingController": "x.io/y", "reportingInstance": "i",
        "regarding": {"kind": "ConfigMap", "namespace": "a", "name": "cm"}});
    let c = http();
    assert_eq!(
        c.post(&url).json(&event).send().await.unwrap().status(),
        201
    );
    let again = c.post(&url).json(&event).send().await.unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(
        again.json::<Value>().await.unwrap()["reason"],
        "AlreadyExists"
    );

    let mut incomplete = event.clone();
    incomplete["metadata"]["name"] = json!("cm.2");
    for field in ["eventTime", "reportingController", "action"] {
        incomplete.as_object_mut().unwrap().remove(field);
    }
    incomplete["type"] = json!("Bad");
    let refused = c.post(&url).json(&incomplete).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let message = refused.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    for field in ["eventTime", "reportingController", "action", "type"] {
        assert!(message.contains(field), "{message}");
    }
    assert_eq!(fake.events().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_gets_410_never_a_gap() {
    let fake = FakeApi::start_with_capacity(4).await;
    let from = rv(&fake.put(cm("a", "first")));
    let watch = get(
        &fake,
        &format!("/api/v1/configmaps?watch=true&resourceVersion={from}&timeoutSeconds=5"),
    )
    .await;
    fake.pause_watches();
    for i in 0..20 {
        fake.put(cm("a", &format!("n{i:02}")));
    }
    fake.resume_watches();
    let events = lines(watch).await;
    let last = events.last().expect("an ERROR event");
    assert_eq!(last["type"], "ERROR", "{events:?}");
    assert_eq!(last["object"]["code"], 410);
    // Whatever came before the error came in order, without a hole.
    let rvs: Vec<u64> = events[..events.len() - 1]
        .iter()
        .map(|e| rv(&e["object"]))
        .collect();
    for (i, r) in rvs.iter().enumerate() {
        assert_eq!(*r, from + 1 + i as u64, "{rvs:?}");
    }
}

#[tokio::test]
async fn a_failed_patch_test_is_422_and_dry_run_stores_nothing() {
    let fake = FakeApi::start().await;
    let stored = fake.put(cm("a", "one"));
    let url = format!("{}/api/v1/namespaces/a/configmaps/one", fake.url());
    let c = http();
    let send = |ops: Value, dry: bool| {
        c.patch(if dry {
            format!("{url}?dryRun=All")
        } else {
            url.clone()
        })
        .header("content-type", "application/json-patch+json")
        .body(ops.to_string())
        .send()
    };
    let stale = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                       {"op": "replace", "path": "/data/k", "value": "x"}]);
    assert_eq!(send(stale, false).await.unwrap().status(), 422);
    let fresh = json!([{"op": "test", "path": "/metadata/resourceVersion",
                        "value": stored["metadata"]["resourceVersion"]},
                       {"op": "replace", "path": "/data/k", "value": "x"}]);
    assert_eq!(send(fresh.clone(), true).await.unwrap().status(), 200);
    assert_eq!(fake.get(&stored).unwrap(), stored);
    assert_eq!(send(fresh, false).await.unwrap().status(), 200);
    assert_eq!(fake.get(&stored).unwrap()["data"]["k"], "x");
}

/// Metadata-only reads are answered as kube-apiserver answers them, in the form kube's typed
/// client reads (`Api::list_metadata`, `Api::get_metadata`): metadata and nothing else, paged.
#[tokio::test]
async fn metadata_only_lists_and_gets_carry_metadata_alone() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams};

    let fake = FakeApi::start().await;
    fake.put_all((0..3).map(|i| cm("shop", &format!("c{i}"))));
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "shop");
    let first = api
        .list_metadata(&ListParams::default().limit(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    let rest = api
        .list_metadata(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["c0", "c1", "c2"]);
    let one = api.get_metadata("c1").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("c1"));

    // On the wire: PartialObjectMetadataList of PartialObjectMetadata, no data.
    let raw: Value = http()
        .get(format!("{}/api/v1/namespaces/shop/configmaps", fake.url()))
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert_eq!(raw["apiVersion"], "meta.k8s.io/v1");
    for item in raw["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "PartialObjectMetadata");
        let keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"], "{item}");
    }
    let log = fake.request_log();
    assert!(log
        .iter()
        .filter(|r| r.path.ends_with("/configmaps"))
        .all(|r| r.metadata_only()));
}
