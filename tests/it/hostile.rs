//! Hostile clients against the real server: plain HTTP on the TLS port, handshakes that stall,
//! thousands of idle connections, 100 MB bodies, JSON nested 100,000 deep. Each must be dropped
//! or refused while other clients keep being answered, and none may cost the server more than a
//! bounded amount of memory. Loopback only; every test stops by itself.

use std::sync::Arc;
use std::time::Duration;

use rancher_remap::rewrite::MutateSettings;
use rancher_remap::source::Source;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const MAPPINGS: &str = "p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z";

fn review() -> Value {
    serde_json::from_str(&data("create-deployment-migrated.json")).unwrap()
}

/// A well-behaved client's request: must be answered with a patch.
async fn served(client: &reqwest::Client, url: &str) {
    let r = client
        .post(url)
        .json(&review())
        .send()
        .await
        .unwrap_or_else(|e| panic!("a well-behaved client failed: {e:?}"));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response"]["patchType"], "JSONPatch", "{v}");
}

/// Reads until the server closes the connection; how many bytes it sent.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the server closed the connection");
    total
}

/// A TLS connector for HTTP/1.1 that trusts only `ca`.
fn connector(ca: &str) -> tokio_rustls::TlsConnector {
    let mut cfg = client_config(ca);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_stalled_handshakes_are_dropped_while_others_are_served() {
    let s = start_timed(
        Source::Static(MAPPINGS.into()),
        MutateSettings::default(),
        |t| rancher_remap::server::Timing {
            handshake: Duration::from_secs(1),
            header_read: Duration::from_secs(1),
            ..t
        },
    )
    .await;
    let client = s.client(&s.ca, false);

    // Plain HTTP on the TLS port: not a ClientHello, so the handshake fails and the connection
    // is closed at once (at most a TLS alert is sent, never an HTTP answer).
    let mut plain = TcpStream::connect(s.webhook).await.unwrap();
    plain
        .write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let sent = read_until_closed(&mut plain, Duration::from_secs(5)).await;
    assert!(
        sent < 64,
        "only an alert, not an HTTP response ({sent} bytes)"
    );

    // Stalled handshakes: a connection that says nothing, and one that stops mid-ClientHello.
    let mut silent = TcpStream::connect(s.webhook).await.unwrap();
    let mut partial = TcpStream::connect(s.webhook).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    served(&client, &s.url("/mutate")).await;
    read_until_closed(&mut silent, Duration::from_secs(5)).await;
    read_until_closed(&mut partial, Duration::from_secs(5)).await;
    served(&client, &s.url("/mutate")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_cost_little_memory() {
    const IDLE: usize = 2_000;
    let server = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let client = server.client(false);
    served(&client, &server.url("/mutate")).await;
    let before = server.status_kib("VmRSS");

    // Completed handshakes, then silence (as many connection pools leave them), opened 100 at a
    // time.
    let tls = connector(&server.ca);
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE / 100 {
        let batch: Vec<_> = (0..100)
            .map(|_| tokio::spawn(tls_connect(server.webhook, tls.clone())))
            .collect();
        for c in batch {
            idle.push(c.await.unwrap());
        }
    }
    served(&client, &server.url("/mutate")).await;
    let after = server.status_kib("VmRSS");
    let per_connection = (after.saturating_sub(before)) * 1024 / IDLE as u64;
    eprintln!("{IDLE} idle TLS connections: RSS {before} -> {after} KiB, {per_connection} B each");
    // A rustls session with its buffers and a hyper connection task: a few KiB each, so that a
    // few thousand idle clients cannot exhaust a 256 MiB limit.
    assert!(
        per_connection < 32 * 1024,
        "{per_connection} bytes per idle connection"
    );
    assert!(
        server.open_fds() >= IDLE,
        "the idle connections are still open"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_without_being_buffered() {
    let server = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let client = server.client(false);
    served(&client, &server.url("/mutate")).await;
    let hwm_before = server.status_kib("VmHWM");

    // A declared 100 MB body: 413 from the headers alone (the body is never sent).
    let mut tls = tls_connect(server.webhook, connector(&server.ca)).await;
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 104857600\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut head))
        .await
        .expect("answered before any body byte")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // 100 MB streamed without a length (chunked): cut off at the limit (8 MiB).
    let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
    let stream = futures_stream(chunk, 100);
    let r = client
        .post(server.url("/mutate"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may close the connection while the client is still sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    served(&client, &server.url("/mutate")).await;
    let grew = server.status_kib("VmHWM").saturating_sub(hwm_before);
    assert!(
        grew < 40 * 1024,
        "peak memory grew by {grew} KiB for 200 MB refused"
    );
}

/// `n` copies of `chunk`, as a body stream.
fn futures_stream(
    chunk: bytes::Bytes,
    n: usize,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::iter((0..n).map(move |_| Ok(chunk.clone())))
}

/// JSON is UTF-8: bytes that are not text are refused wherever they are, also in fields the
/// webhook skips without reading (found by the review fuzz target: `managedFields` carrying a
/// stray continuation byte was answered). The error names the position, never the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_text_are_refused_even_where_nothing_is_read() {
    let server = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let client = server.client(false);
    let mut body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Namespace"},"operation":"CREATE","userInfo":{"username":"x"},"object":{"metadata":{"name":"n","managedFields":[{"fieldsV1":{"f:metadata"#.to_vec();
    body.extend_from_slice(&[0xB9, 0xFF]);
    body.extend_from_slice(br#"":{}}}]},"spec":{}}}}"#);
    for path in ["/mutate", "/validate"] {
        let (status, v) = post_bytes(&client, &server.url(path), body.clone()).await;
        assert_eq!(status, 400, "{path}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains("not UTF-8") && error.contains("line 1"),
            "{error}"
        );
    }
    // The same body, made text, is answered.
    let text = String::from_utf8_lossy(&body).into_owned();
    let (status, v) = post_bytes(&client, &server.url("/mutate"), text).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_answered_and_the_server_lives() {
    let mut server = ServeProcess::start(&["--project-mappings", MAPPINGS], &[]).await;
    let client = server.client(false);
    let deep = |depth: usize, open: &str, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
    };
    let envelope = |object: &str| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Namespace"}},"operation":"CREATE","userInfo":{{"username":"x"}},"object":{object}}}}}"#
        )
    };
    // (body, whether /mutate may allow it): nesting around everything is refused by the
    // parser's depth limit. Nesting anywhere inside the object — even where labels belong (a
    // labels value that is not a map is not read) — is skipped by /mutate's walk without
    // building anything; serde_json refuses deep arrays there and passes over deep objects
    // without recursing, so either a 400 or an unchanged allow is right — what matters is
    // that the answer comes, as deep as the 8 MiB body limit allows. /validate reads whole
    // objects and refuses all of them.
    let bodies = [
        (
            envelope(&format!(
                r#"{{"metadata":{{"labels":{}}}}}"#,
                deep(100_000, "[", "", "]")
            )),
            true,
        ),
        (
            envelope(&format!(
                r#"{{"spec":{}}}"#,
                deep(1_300_000, r#"{"a":"#, "1", "}")
            )),
            true,
        ),
        (
            envelope(&format!(r#"{{"spec":{}}}"#, deep(4_000_000, "[", "", "]"))),
            true,
        ),
        (deep(100_000, "[", "", "]"), false),
    ];
    for (body, mutate_may_allow) in &bodies {
        for path in ["/mutate", "/validate"] {
            let (status, v) = post_bytes(&client, &server.url(path), body.clone()).await;
            if *mutate_may_allow && path == "/mutate" && status == 200 {
                assert_eq!(v["response"]["allowed"], true);
                assert!(v["response"].get("patch").is_none());
            } else {
                assert_eq!(status, 400, "{path}: {v}");
                assert!(v["error"].is_string(), "{v}");
            }
        }
    }
    served(&client, &server.url("/mutate")).await;
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_new_clients_wait_for_a_free_slot() {
    let s = start_timed(
        Source::Static(MAPPINGS.into()),
        MutateSettings::default(),
        |t| rancher_remap::server::Timing {
            max_connections: 4,
            header_read: Duration::from_secs(1),
            ..t
        },
    )
    .await;
    // Four clients take every slot and then say nothing after their handshakes.
    let tls = connector(&s.ca);
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tls_connect(s.webhook, tls.clone()).await);
    }
    let open = |text: String| metric(&text, "rancher_remap_connections");
    assert_eq!(open(s.metrics().await), Some(4.0));
    // A fifth is not refused: it waits in the backlog, and is served once the silent ones are
    // cut off for not starting a request.
    served(&s.client(&s.ca, false), &s.url("/mutate")).await;
    // With every client gone, nothing is counted any more.
    eventually(
        "no connection counted",
        Duration::from_secs(5),
        async || open(s.metrics().await) == Some(0.0),
    )
    .await;
    for mut c in silent {
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a silent connection was closed"
        );
    }
}

/// kube-apiserver keeps webhook connections for up to 90 s between calls; the server must not
/// close them after the (much shorter) head timeout, or a call sent just as it closes fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_head_timeout() {
    let s = start_timed(
        Source::Static(MAPPINGS.into()),
        MutateSettings::default(),
        |t| rancher_remap::server::Timing {
            header_read: Duration::from_millis(200),
            ..t
        },
    )
    .await;
    let mut conn = tls_connect(s.webhook, connector(&s.ca)).await;
    let body = serde_json::to_vec(&review()).unwrap();
    assert!(post_raw(&mut conn, &body).await.starts_with("HTTP/1.1 200"));
    // A second connection that starts a head and stops is cut off by the head timeout: once it
    // is, the first has been idle longer than that timeout (observed, not slept).
    let mut late = tls_connect(s.webhook, connector(&s.ca)).await;
    late.write_all(b"POST /mutate HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    late.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let cut = tokio::time::timeout(Duration::from_secs(10), late.read(&mut buf)).await;
    assert!(
        matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
        "the half head was cut off: {cut:?}"
    );
    // The idle keep-alive connection still answers the next call.
    assert!(post_raw(&mut conn, &body).await.starts_with("HTTP/1.1 200"));
}

/// One POST /mutate on a raw HTTP/1.1 connection; the response head.
async fn post_raw(conn: &mut tokio_rustls::client::TlsStream<TcpStream>, body: &[u8]) -> String {
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn
            .read(&mut buf)
            .await
            .expect("the connection is still open");
        assert!(n > 0, "the server closed the connection");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if rest.len() >= length {
                return head.to_string();
            }
        }
    }
}
