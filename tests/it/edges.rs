//! The edges a user hits first, each reached from the outside: the real binary and the real TLS
//! listener. An empty mapping table is never put in force; a request body has a deadline; an
//! answer given before the body is read reaches HTTP/2 and HTTP/1.1 clients intact; `null` in an
//! optional review field reads as absent.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::fake_api::FakeApi;

const MAPPINGS: &str = "p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z";
/// The identity the Namespace fixture is written by.
const STORK: &str = "system:serviceaccount:kube-system:stork-migrator";

fn review(name: &str) -> Value {
    serde_json::from_str(&data(name)).unwrap()
}

/// The project-ID label the server writes on the Namespace Stork creates (`None`: no patch).
async fn namespace_label(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp: Value = client
        .post(url)
        .json(&review("create-namespace-by-stork.json"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let patch = patch_ops(&resp)?;
    patch
        .iter()
        .find(|op| op["path"] == "/metadata/labels/field.cattle.io~1projectId")
        .map(|op| op["value"].as_str().unwrap_or("(removed)").to_string())
}

fn patch_ops(resp: &Value) -> Option<Vec<Value>> {
    use base64::Engine;
    let b64 = resp["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).ok()
}

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn serve_refuses_to_start_on_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let base = |cmd: &mut std::process::Command| {
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    };
    let mut by_flag = bin();
    base(&mut by_flag);
    by_flag.args(["--project-mappings", " , "]);
    let mut by_env = bin();
    base(&mut by_env);
    by_env.env("RANCHER_REMAP_PROJECT_MAPPINGS", "");
    for (what, mut cmd) in [
        ("--project-mappings ' , '", by_flag),
        ("RANCHER_REMAP_PROJECT_MAPPINGS=''", by_env),
    ] {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}");
        let e = stderr(&out);
        assert!(
            e.contains("no mapping entries") || e.contains("empty entry"),
            "{what}: {e}"
        );
    }
}

/// Waits until the server at `admin` has refused `n` tables.
async fn rejections_reach(admin: std::net::SocketAddr, n: f64, what: &str) {
    let series = "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}";
    eventually(what, Duration::from_secs(10), async || {
        let text = get(format!("http://{admin}/metrics")).await.1;
        metric(&text, series).unwrap_or(0.0) >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_mappings_file_is_never_put_in_force() {
    // kubelet's layout for a mounted ConfigMap, swapped atomically.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("mappings"), text).unwrap();
        std::os::unix::fs::symlink(name, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    };
    // Unreadable at start (the ConfigMap is not mounted yet), then empty: the empty file is
    // read, refused and counted (it used to be taken for the "already seen" marker).
    let file = d.join("mappings");
    std::os::unix::fs::symlink("..data/mappings", &file).unwrap();
    let server = ServeProcess::start(
        &[
            "--mappings-file",
            file.to_str().unwrap(),
            "--migration-user",
            STORK,
            "--cluster-id",
            "c-m-4kq8z9rt",
        ],
        &[],
    )
    .await;
    let admin = server.admin;
    rejections_reach(admin, 1.0, "the unreadable file counted").await;
    version("..v1", "\n");
    rejections_reach(admin, 2.0, "the empty file refused").await;
    assert_eq!(get(format!("http://{admin}/readyz")).await.0, 503);

    version("..v2", MAPPINGS);
    eventually("ready", Duration::from_secs(10), async || {
        get(format!("http://{admin}/readyz")).await.0 == 200
    })
    .await;
    let client = server.client(false);
    let url = server.url("/mutate");
    assert_eq!(
        namespace_label(&client, &url).await.as_deref(),
        Some("p-xy99z")
    );

    // A good file replaced by an empty one: refused, the good table stays.
    version("..v3", "");
    rejections_reach(admin, 3.0, "the empty file refused").await;
    let metrics = get(format!("http://{admin}/metrics")).await.1;
    assert_eq!(
        metric(&metrics, "rancher_remap_mapping_table_entries"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        namespace_label(&client, &url).await.as_deref(),
        Some("p-xy99z")
    );
    assert_eq!(get(format!("http://{admin}/readyz")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_configmap_emptied_keeps_the_last_good_table() {
    let fake = FakeApi::start().await;
    let configmap = |data: Value| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                         "labels": {"rancher-remap.io/mappings": "true"},
                         "annotations": {"rancher-remap.io/migration-users": STORK}},
            "data": data,
        })
    };
    fake.put(configmap(json!({"mig.remote": "p-ab12c=p-xy99z\n"})));
    let s = start_watching(
        fake.client(),
        "rancher-remap/rancher-remap-mappings".parse().unwrap(),
        Default::default(),
    )
    .await;
    let client = s.client(&s.ca, false);
    let url = s.url("/mutate");
    eventually("the first table", Duration::from_secs(10), async || {
        namespace_label(&client, &url).await.as_deref() == Some("p-xy99z")
    })
    .await;
    fake.put(configmap(json!({})));
    eventually(
        "the MappingsRejected Event",
        Duration::from_secs(10),
        async || {
            fake.events().iter().any(|e| {
                e["reason"] == "MappingsRejected"
                    && e["note"]
                        .as_str()
                        .is_some_and(|n| n.contains("no mapping entries"))
            })
        },
    )
    .await;
    let metrics = s.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "rancher_remap_mapping_table_entries"),
        Some(1.0)
    );
    assert_eq!(
        namespace_label(&client, &url).await.as_deref(),
        Some("p-xy99z"),
        "the last good table is still in force"
    );
    // Blank lines only: no entries either.
    fake.put(configmap(json!({"mig.remote": "\n\n"})));
    eventually("the second refusal", Duration::from_secs(10), async || {
        metric(
            &s.metrics().await,
            "rancher_remap_mapping_table_reloads_total{result=\"rejected\"}",
        ) == Some(2.0)
    })
    .await;
    assert_eq!(
        namespace_label(&client, &url).await.as_deref(),
        Some("p-xy99z")
    );
}

#[test]
fn check_and_validate_refuse_an_empty_mapping_configmap() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rancher-remap-mappings\n  labels: {rancher-remap.io/mappings: \"true\"}\ndata: {}\n",
    )
    .unwrap();
    let out = run(&["check", "-f", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("no mapping entries"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_denies_an_empty_mapping_configmap_and_allows_a_clusterpair_without_mappings() {
    let server = ServeProcess::start(&["--validate-only"], &[]).await;
    let client = server.client(false);
    let review = |kind: &str, group: &str, object: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
            "name": "x", "namespace": "rancher-remap", "operation": "UPDATE",
            "userInfo": {"username": "admin"}, "object": object}})
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {}});
    let resp: Value = client
        .post(server.url("/validate"))
        .json(&review("ConfigMap", "", cm))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    assert!(resp.to_string().contains("no mapping entries"), "{resp}");

    let mut cp: Value = rancher_remap::manifest::parse_objects(
        &std::fs::read_to_string(repo("deploy/examples/clusterpair.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0);
    cp["spec"]
        .as_object_mut()
        .unwrap()
        .remove("platformOptions");
    let resp: Value = client
        .post(server.url("/validate"))
        .json(&review("ClusterPair", "stork.libopenstorage.org", cp))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
}

/// A raw TLS connection to `server`'s webhook port, offering the one protocol `alpn`.
async fn raw_connection(
    server: &ServeProcess,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut cfg = client_config(&server.ca);
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_at_the_request_deadline_while_others_are_served() {
    let server = ServeProcess::start(
        &["--project-mappings", MAPPINGS, "--request-timeout", "2"],
        &[],
    )
    .await;
    let mut conn = raw_connection(&server, b"http/1.1").await;
    conn.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    // One byte every 100 ms, on and on; read what comes back meanwhile.
    let (mut rd, mut wr) = tokio::io::split(conn);
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // A well-behaved client is served all along.
    let client = server.client(false);
    let mut served = 0;
    let answer = tokio::time::timeout(Duration::from_secs(8), async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        if String::from_utf8_lossy(&got).contains("\"code\":408") {
                            break;
                        }
                    }
                },
                r = client.post(server.url("/mutate")).json(&review("create-deployment-migrated.json")).send() => {
                    assert_eq!(r.unwrap().status(), 200);
                    served += 1;
                }
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("the trickling client is answered within the deadline");
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(1500),
        "answered before the deadline: {elapsed:?}"
    );
    assert!(served > 0, "others were served meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_http2_and_http1_clients_intact() {
    let server = ServeProcess::start(&["--validate-only"], &[]).await;
    let body = serde_json::to_vec(&review("create-deployment-migrated.json")).unwrap();
    let big = vec![b' '; 20 << 20];
    for h2 in [true, false] {
        let client = server.client(h2);
        // /mutate on a validate-only server: 404 before the body is read.
        for i in 0..32 {
            answered_whole(&client, &server.url("/mutate"), body.clone(), 404, h2, i).await;
        }
        // 20 MB declared: 413 from the head alone.
        for i in 0..4 {
            answered_whole(&client, &server.url("/validate"), big.clone(), 413, h2, i).await;
        }
    }
}

/// POSTs `body` and checks that the early answer arrives whole: the status and its JSON body.
async fn answered_whole(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    status: u16,
    h2: bool,
    attempt: usize,
) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("h2={h2} try {attempt}: {e:?}"));
    assert_eq!(r.status().as_u16(), status, "h2={h2}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_in_optional_review_fields_reads_as_absent() {
    let server = ServeProcess::start(
        &["--project-mappings", MAPPINGS, "--migration-user", STORK],
        &[],
    )
    .await;
    let client = server.client(false);
    let mut r = review("create-namespace-by-stork.json");
    let req = &mut r["request"];
    for field in [
        "namespace",
        "oldObject",
        "options",
        "dryRun",
        "subResource",
        "requestKind",
        "requestResource",
        "requestSubResource",
    ] {
        req[field] = Value::Null;
    }
    req["userInfo"]["groups"] = Value::Null;
    req["userInfo"]["uid"] = Value::Null;
    let resp = client
        .post(server.url("/mutate"))
        .json(&r)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["response"]["uid"], r["request"]["uid"]);
    assert!(patch_ops(&v).is_some(), "still rewritten: {v}");
    // A DELETE: object null, oldObject set.
    let resp = client
        .post(server.url("/mutate"))
        .json(&review("delete-namespace.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// An HTTP/2 connection to the server's webhook port (ALPN h2); the caller drives the connection.
async fn h2_connect(
    server: &ServeProcess,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::client::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
) {
    let tls = raw_connection(server, b"h2").await;
    h2::client::handshake(tls).await.unwrap()
}

/// Posts to `path` declaring a `length`-byte body (and sends its first byte when `first_byte`),
/// and checks that the early answer `status` arrives whole (its JSON `code` too) before the rest
/// is sent; returns the request's stream.
async fn early_answer(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    (path, length, first_byte): (&str, usize, bool),
    status: u16,
) -> h2::SendStream<bytes::Bytes> {
    let request = axum::http::Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .header("content-length", length)
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    if first_byte {
        send.send_data(bytes::Bytes::from_static(b"{"), false)
            .unwrap();
    }
    let response = response.await.expect("the answer arrives");
    assert_eq!(response.status().as_u16(), status, "{path}");
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the answer's body arrives whole");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["code"], status, "{path}");
    send
}

/// HTTP/2 at the frame level: a request whose body is still being sent when the answer comes
/// (as curl and most clients send it). The answer must arrive whole, and the client must be able
/// to finish sending: a stream reset while it uploads, even with NO_ERROR, is a failure in
/// curl ("(92) Stream error in the HTTP/2 framing layer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_http2_answer_lets_the_client_finish_its_upload() {
    use futures::FutureExt;
    let server = ServeProcess::start(&["--validate-only"], &[]).await;
    let (client, mut connection) = h2_connect(&server).await;
    let mut ping = connection.ping_pong().unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for (path, length, status) in [
        ("/mutate", 5_000usize, 404u16),
        ("/validate", 20 << 20, 413),
    ] {
        for _ in 0..8 {
            let mut send = early_answer(&mut client, (path, length, true), status).await;
            // The rest of the body, then a round trip: any reset the server sent for this
            // stream has arrived by the time the pong does.
            send.send_data(bytes::Bytes::from(vec![b' '; length - 1]), true)
                .expect("the stream is still open for the upload");
            ping.ping(h2::Ping::opaque()).await.unwrap();
            let reset = std::future::poll_fn(|cx| send.poll_reset(cx)).now_or_never();
            assert!(reset.is_none(), "{path}: the upload was cut off: {reset:?}");
            client = client.ready().await.unwrap();
        }
    }
}

/// A body declared longer than the server drains is cut off after an early answer; over HTTP/2
/// the answer must still arrive whole, the reset must be NO_ERROR ("stop sending"), never CANCEL,
/// and the connection must go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_http2_answer_to_an_undrained_body_arrives_whole_then_stops_the_upload() {
    let server = ServeProcess::start(&["--validate-only"], &[]).await;
    let (client, connection) = h2_connect(&server).await;
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // One byte over what the server drains (32 MiB): the body is cut off, not read. The answer
    // needs only the headers, and the server may stop the stream before a first body byte could
    // be sent, so none is.
    let length = (32usize << 20) + 1;
    for (path, status) in [("/mutate", 404u16), ("/validate", 413), ("/mutate", 404)] {
        let mut send = early_answer(&mut client, (path, length, false), status).await;
        let reset = tokio::time::timeout(
            Duration::from_secs(10),
            std::future::poll_fn(|cx| send.poll_reset(cx)),
        )
        .await
        .expect("the server stops the upload it will not read")
        .expect("a reset, not a connection error");
        assert_eq!(reset, h2::Reason::NO_ERROR, "{path}");
        client = client
            .ready()
            .await
            .expect("the connection goes on serving");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_answers_without_a_patch_and_says_what_it_would_rewrite() {
    let server =
        ServeProcess::start(&["--project-mappings", MAPPINGS, "--mode", "warn"], &[]).await;
    let client = server.client(false);
    let resp: Value = client
        .post(server.url("/mutate"))
        .json(&review("create-deployment-migrated.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &resp["response"];
    assert_eq!(r["allowed"], true, "{resp}");
    assert!(
        r.get("patch").is_none() && r.get("patchType").is_none(),
        "{resp}"
    );
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("--mode warn: the patch was not applied")
            && warnings.contains("p-ab12c->p-xy99z"),
        "{resp}"
    );
    assert!(
        r["auditAnnotations"]["project-ids"]
            .as_str()
            .is_some_and(|a| a.contains("->p-xy99z")),
        "{resp}"
    );
    let metrics = get(format!("http://{}/metrics", server.admin)).await.1;
    assert_eq!(
        metric(
            &metrics,
            "rancher_remap_requests_total{endpoint=\"mutate\",outcome=\"would_patch\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Boolean environment variables read as an operator writes them: `false`/`0` switch
/// validate-only off (a mapping source beside it is fine), `1`/`true` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_from_the_environment_reads_true_false_1_and_0() {
    for off in ["false", "0"] {
        let mut s = ServeProcess::start(
            &[
                "--project-mappings",
                MAPPINGS,
                "--cluster-id",
                "c-m-4kq8z9rt",
            ],
            &[("RANCHER_REMAP_VALIDATE_ONLY", off)],
        )
        .await;
        let (status, _) = get(format!("http://{}/readyz", s.admin)).await;
        assert_eq!(status, 200, "{off}");
        let log = s.log.lock().unwrap().clone();
        assert!(log.contains("mapping table loaded"), "{off}: {log}");
        assert!(s.terminate().success());
    }
    for on in ["true", "1"] {
        let mut s = ServeProcess::start(&[], &[("RANCHER_REMAP_VALIDATE_ONLY", on)]).await;
        let log = s.log.lock().unwrap().clone();
        assert!(log.contains("validate-only"), "{on}: {log}");
        assert!(s.terminate().success());
    }
}

/// A destination server without this cluster's ID runs but is never ready, and says how to set
/// it where an operator looks: `/readyz` and its log.
#[tokio::test]
async fn a_destination_without_a_cluster_id_is_never_ready_and_says_how_to_set_it() {
    let s = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let answer = reqwest::get(format!("http://{}/readyz", s.admin))
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let text = answer.text().await.unwrap();
    for how in ["--cluster-id", "RANCHER_REMAP_CLUSTER_ID", "clusterId"] {
        assert!(text.contains(how), "/readyz does not name {how}: {text}");
        assert!(
            s.log.lock().unwrap().contains(how),
            "the log does not name {how}"
        );
    }
    // The table is loaded: the cluster ID alone keeps it unready.
    assert!(s.log.lock().unwrap().contains("mapping table loaded"));
}
