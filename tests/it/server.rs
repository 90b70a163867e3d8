//! The real TLS listener, called as kube-apiserver calls it.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{MutateSettings, Scope};
use rancher_remap::rewrite::{Options, UnmappedPolicy};
use rancher_remap::source::Source;

use crate::common::*;

const MAPPINGS: &str = "p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z";

fn settings() -> MutateSettings {
    crate::common::destination()
}

fn review(name: &str) -> Value {
    serde_json::from_str(&data(name)).unwrap()
}

/// The migrated Deployment fixture, posted to `/mutate` over a fresh HTTP/1.1 client.
async fn post_migrated_deployment(s: &TestServer) -> (u16, Value) {
    post(
        &s.client(&s.ca, false),
        &s.url("/mutate"),
        &review("create-deployment-migrated.json"),
    )
    .await
}

fn patch_of(resp: &Value) -> Option<Vec<json_patch::PatchOperation>> {
    let b64 = resp["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_over_http1_and_http2_matches_the_engine() {
    let mut s = start(Source::Static(MAPPINGS.into()), settings()).await;
    let req = review("create-deployment-migrated.json");
    let obj = req["request"]["object"].clone();
    let table = Mappings::from_text(MAPPINGS).unwrap();
    let expected = rewrite(
        &obj,
        &table,
        &Options {
            unmapped: UnmappedPolicy::Drop,
            migrated: true,
        },
    )
    .apply(&obj)
    .unwrap();
    for h2 in [false, true] {
        let c = s.client(&s.ca, h2);
        let r = c.post(s.url("/mutate")).json(&req).send().await.unwrap();
        assert_eq!(
            r.version(),
            if h2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        let resp: Value = r.json().await.unwrap();
        assert_eq!(
            (resp["apiVersion"].as_str(), resp["kind"].as_str()),
            (Some("admission.k8s.io/v1"), Some("AdmissionReview"))
        );
        assert_eq!(resp["response"]["uid"], req["request"]["uid"]);
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let mut patched = obj.clone();
        json_patch::patch(&mut patched, &patch_of(&resp).unwrap()).unwrap();
        assert_eq!(patched, expected);
        // p-cd56e has no mapping: one warning per value, and an audit annotation.
        assert_eq!(
            resp["response"]["warnings"].as_array().unwrap().len(),
            2,
            "{resp}"
        );
        assert!(resp["response"]["auditAnnotations"]["project-ids"]
            .as_str()
            .unwrap()
            .contains("p-ab12c->p-xy99z"));
    }
    s.stop();
    s.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rules() {
    let s = start(Source::Static(MAPPINGS.into()), settings()).await;
    let c = s.client(&s.ca, false);
    // The fixture's Namespace names a source cluster of the table (c-7gh2k) in its Rancher
    // annotation: rewritten, whoever writes it.
    let mut ns = review("create-namespace-by-stork.json");
    ns["request"]["userInfo"]["username"] = json!("u-nobody-named");
    let (_, resp) = post(&c, &s.url("/mutate"), &ns).await;
    assert!(patch_of(&resp).is_some(), "{resp}");
    // With the label alone (no annotation to tell where it came from): out of scope unless
    // the writer is a migration user.
    let mut ns = review("create-namespace-by-stork.json");
    ns["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("field.cattle.io/projectId");
    let (_, resp) = post(&c, &s.url("/mutate"), &ns).await;
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    let with_user = MutateSettings {
        migration_users: HashSet::from([
            "system:serviceaccount:kube-system:stork-migrator".to_string()
        ]),
        ..settings()
    };
    let s2 = start(Source::Static(MAPPINGS.into()), with_user).await;
    let (_, resp) = post(&s2.client(&s2.ca, false), &s2.url("/mutate"), &ns).await;
    assert!(patch_of(&resp).is_some(), "{resp}");
    // Migration users from the mappings file's ConfigMap annotation count too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::copy(repo("deploy/examples/mappings-configmap.yaml"), &path).unwrap();
    let s3 = start(Source::File(path), settings()).await;
    let c3 = s3.client(&s3.ca, false);
    eventually("ready", Duration::from_secs(5), async || {
        reqwest::get(s3.admin_url("/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (_, resp) = post(&c3, &s3.url("/mutate"), &ns).await;
    assert!(patch_of(&resp).is_some(), "{resp}");
    // --scope all: an ordinary user's object without the annotation is rewritten.
    let mut plain = review("create-deployment-migrated.json");
    plain["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("stork.libopenstorage.org/migrated");
    let (_, resp) = post(&c, &s.url("/mutate"), &plain).await;
    assert!(resp["response"].get("patch").is_none());
    let all = start(
        Source::Static(MAPPINGS.into()),
        MutateSettings {
            scope: Scope::All,
            ..settings()
        },
    )
    .await;
    let (_, resp) = post(&all.client(&all.ca, false), &all.url("/mutate"), &plain).await;
    assert!(patch_of(&resp).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_dry_run() {
    let s = start(
        Source::Static("p-ab12c=p-xy99z,p-cd56e=p-gh34k".into()),
        settings(),
    )
    .await;
    let c = s.client(&s.ca, false);
    let (status, resp) = post(&c, &s.url("/mutate"), &review("delete-namespace.json")).await;
    assert_eq!(status, 200);
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());
    // dryRun gets the same answer as a real request.
    let dry = review("update-networkpolicy-dryrun.json");
    let mut real = dry.clone();
    real["request"]["dryRun"] = json!(false);
    let (_, a) = post(&c, &s.url("/mutate"), &dry).await;
    let (_, b) = post(&c, &s.url("/mutate"), &real).await;
    assert!(patch_of(&a).is_some());
    assert_eq!(a["response"], b["response"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_names_object_key_and_value() {
    let s = start(
        Source::Static("p-ab12c=p-xy99z".into()),
        MutateSettings {
            unmapped: UnmappedPolicy::Deny,
            ..settings()
        },
    )
    .await;
    let (_, resp) = post_migrated_deployment(&s).await;
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["status"]["code"], 403);
    let msg = resp["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Deployment shop/web")
            && msg.contains("field.cattle.io/projectId")
            && msg.contains("\"p-cd56e\""),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_with_json() {
    let s = start(Source::Static(MAPPINGS.into()), settings()).await;
    let c = s.client(&s.ca, false);
    let send = async |body: Vec<u8>| {
        let r = c
            .post(s.url("/mutate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.expect("JSON error body");
        assert!(v["error"].is_string(), "{v}");
        status
    };
    assert_eq!(send(b"not json".to_vec()).await, 400);
    assert_eq!(
        send(
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#
                .to_vec()
        )
        .await,
        400
    );
    assert_eq!(
        send(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec()).await,
        400
    );
    assert_eq!(
        send(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#
                .to_vec()
        )
        .await,
        400
    );
    // Over the limit: refused from the declared length, before the body is read. The server may
    // close before the client finishes writing, so the client sees the 413 or a broken write.
    match c
        .post(s.url("/mutate"))
        .header("content-type", "application/json")
        .body(vec![b' '; 65 * 1024])
        .send()
        .await
    {
        Ok(r) => {
            assert_eq!(r.status().as_u16(), 413);
            assert!(r.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("limit"));
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // Still serving.
    let (status, _) = post(
        &c,
        &s.url("/mutate"),
        &review("create-deployment-migrated.json"),
    )
    .await;
    assert_eq!(status, 200);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(
            "rancher_remap_requests_total{endpoint=\"mutate\",outcome=\"bad_request\"} 5"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_clusterpairs() {
    let s = start(Source::Static(MAPPINGS.into()), settings()).await;
    validates_the_example_clusterpair(&s).await;
}

/// The source cluster's server: no mappings, ready at once, validates, refuses to mutate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_is_ready_without_mappings_and_does_not_mutate() {
    let s = start_validate_only(settings()).await;
    let ready = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    validates_the_example_clusterpair(&s).await;
    let (status, body) = post_migrated_deployment(&s).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("--validate-only"),
        "{body}"
    );
    assert!(s
        .metrics()
        .await
        .contains(r#"rancher_remap_requests_total{endpoint="mutate",outcome="not_served"} 1"#));
}

async fn validates_the_example_clusterpair(s: &TestServer) {
    let c = s.client(&s.ca, true);
    let cp = rancher_remap::manifest::parse_objects(
        &std::fs::read_to_string(repo("deploy/examples/clusterpair.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let mk = |obj: &Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "kind": "ClusterPair"},
        "resource": {"group": "stork.libopenstorage.org", "version": "v1alpha1", "resource": "clusterpairs"},
        "name": "remotecluster", "namespace": "migrationnamespace", "operation": "CREATE",
        "userInfo": {"username": "admin"}, "object": obj, "oldObject": null, "dryRun": false}})
    };
    let (_, ok) = post(&c, &s.url("/validate"), &mk(&cp)).await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");
    assert!(ok["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("insecure-skip-tls-verify"));
    let mut bad = cp.clone();
    bad["spec"]["platformOptions"]["rancher"]["projectMappings"]["p-xy99z"] = json!("p-other");
    bad["spec"]["config"]["contexts"]["stork@destination"]["cluster"] = json!("nowhere");
    let (_, denied) = post(&c, &s.url("/validate"), &mk(&bad)).await;
    assert_eq!(denied["response"]["allowed"], false);
    let msg = denied["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.platformOptions.rancher.projectMappings[")
            && msg.contains("spec.config.contexts[stork@destination].cluster"),
        "{msg}"
    );
    let token = cp["spec"]["config"]["users"]["stork-migrator"]["token"]
        .as_str()
        .unwrap();
    assert!(!denied.to_string().contains(token) && !ok.to_string().contains(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_mappings_file_and_keeps_the_last_good_table() {
    // kubelet's layout for a mounted ConfigMap: mappings -> ..data/mappings, ..data -> ..v1.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("mappings"), text).unwrap();
        std::os::unix::fs::symlink(name, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    };
    version("..v1", "p-a=p-b,");
    std::os::unix::fs::symlink("..data/mappings", d.join("mappings")).unwrap();
    let s = start(Source::File(d.join("mappings")), settings()).await;
    let ready = async || {
        reqwest::get(s.admin_url("/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready().await, 503, "invalid first table: not ready");
    let (status, _) = post_migrated_deployment(&s).await;
    assert_eq!(status, 503);
    version("..v2", MAPPINGS);
    eventually(
        "ready after the symlink swap",
        Duration::from_secs(5),
        async || ready().await == 200,
    )
    .await;
    version("..v3", "p-a=p-b,p-b=p-c");
    eventually("rejection counted", Duration::from_secs(5), async || {
        s.metrics()
            .await
            .contains("rancher_remap_mapping_table_reloads_total{result=\"rejected\"} 2")
    })
    .await;
    let (_, resp) = post_migrated_deployment(&s).await;
    assert!(
        patch_of(&resp).is_some(),
        "the last good table is still in force"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_drops_no_request() {
    let s = start(Source::Static(MAPPINGS.into()), settings()).await;
    let old_ca = s.ca.clone();
    let next = tempfile::tempdir().unwrap();
    let new_ca = write_certs(next.path());
    let both = format!("{old_ca}{new_ca}");
    let body = review("create-deployment-migrated.json");
    // Requests keep flowing on fresh connections (trusting both CAs) during the swap.
    let url = s.url("/mutate");
    let addr = s.webhook;
    let load = tokio::spawn(async move {
        let mut n = 0;
        for _ in 0..60 {
            let c = tls_client(&both, false, addr);
            let r = c
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("no request fails during rotation");
            assert_eq!(r.status(), 200);
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    });
    // Atomic swap: write beside, rename over (key first is fine: a mismatched pair is refused).
    for f in ["tls.key", "tls.crt"] {
        std::fs::copy(next.path().join(f), s.dir.path().join(format!("{f}.new"))).unwrap();
        std::fs::rename(s.dir.path().join(format!("{f}.new")), s.dir.path().join(f)).unwrap();
    }
    let new_only = s.client(&new_ca, false);
    let review_body = review("create-deployment-migrated.json");
    eventually(
        "the new certificate is served",
        Duration::from_secs(5),
        async || {
            new_only
                .post(s.url("/mutate"))
                .json(&review_body)
                .send()
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(load.await.unwrap(), 60);
    assert!(
        s.client(&old_ca, false)
            .post(s.url("/mutate"))
            .json(&review_body)
            .send()
            .await
            .is_err(),
        "the old CA no longer verifies"
    );
    // A broken pair keeps the one in force. The two renames above may already have been
    // refused once (new key, old certificate): count from here, so only the garbage counts.
    let series = "rancher_remap_certificate_reloads_total{result=\"rejected\"}";
    let rejected_before = metric(&s.metrics().await, series).unwrap_or(0.0);
    std::fs::write(s.dir.path().join("tls.crt"), "garbage").unwrap();
    eventually(
        "the garbage certificate refused",
        Duration::from_secs(5),
        async || metric(&s.metrics().await, series).is_some_and(|n| n > rejected_before),
    )
    .await;
    assert!(new_only
        .post(s.url("/mutate"))
        .json(&review_body)
        .send()
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = start(Source::Static(MAPPINGS.into()), settings()).await;
    let body = data("create-deployment-migrated.json");
    // A raw TLS client, so the request can be cut in two around the shutdown.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(&s.ca)));
    let tcp = tokio::net::TcpStream::connect(s.webhook).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    // `Expect: 100-continue`: the server says "100 Continue" once its handler reads the body,
    // so the request is known to be in flight before the shutdown starts (no sleep to guess).
    let head = format!("POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n", body.len());
    let (first, rest) = body.split_at(body.len() / 2);
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tls.read(&mut byte).await.unwrap(),
            1,
            "the server closed early"
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    tls.write_all(first.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    s.stop();
    // New connections are refused once the listener is closed…
    eventually("listener closed", Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(s.webhook).await.is_err()
    })
    .await;
    // …while the request in flight completes.
    tls.write_all(rest.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("7f4b9a1c-0f0e-4a55-9a53-2f1d1f3c0a02"));
    s.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_headers_is_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let header_read = Duration::from_millis(400);
    let s = start_timed(Source::Static(MAPPINGS.into()), settings(), |t| {
        rancher_remap::server::Timing { header_read, ..t }
    })
    .await;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(&s.ca)));
    let tcp = tokio::net::TcpStream::connect(s.webhook).await.unwrap();
    let mut slow = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Half a request head, then silence.
    slow.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    slow.flush().await.unwrap();

    // Meanwhile another client is answered normally.
    let (status, resp) = post_migrated_deployment(&s).await;
    assert_eq!(status, 200, "{resp}");

    // The slow connection is closed by the server (possibly after a 408), not left open.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(elapsed >= header_read, "closed too early: {elapsed:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// The task that keeps the serving certificate current never ends; if it did, the pair in force
/// would expire unrenewed, so the server stops with an error (and the pod restarts, saying why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_when_the_task_keeping_its_certificate_ends() {
    use rancher_remap::server::{Server, Timing};
    use rancher_remap::serving_cert::CertFiles;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let timing = Timing::default();
    let (state, _live, certificate) = app_state(MutateSettings::default(), true, &timing);
    let files = CertFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let mut credentials = files.credentials(certificate, timing.cert_poll).unwrap();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    credentials.follow = Box::pin(async move {
        let _ = ended_rx.await;
    });
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        credentials,
        state,
    )
    .await
    .unwrap();
    let addr = server.webhook_addr;
    let serving = tokio::spawn(server.serve(std::future::pending()));
    // Serving while the task runs...
    eventually("accepting", Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(!serving.is_finished());
    // ...and stopping, with the reason, once it ends.
    ended_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(40), serving)
        .await
        .expect("the server stopped")
        .unwrap();
    let err = result.expect_err("an error, not a clean stop");
    assert!(
        format!("{err:#}").contains("the task keeping the serving certificate current ended"),
        "{err:#}"
    );
}
