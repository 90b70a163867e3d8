//! Stopping without refusing a write (SPEC §17), from the outside: the real binary, its TLS
//! listener, and HTTP/1.1 keep-alive clients that never retry a request, as kube-apiserver's
//! webhook client does not.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::common::{client_config, data, ServeProcess};

/// What happened to the requests one client sent.
#[derive(Default)]
struct Tally {
    /// Answered 200.
    answered: AtomicUsize,
    /// Written on an open connection and never answered: the apiserver would refuse the write.
    lost: AtomicUsize,
    /// Answers that said `Connection: close`.
    told_to_close: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

/// Where a client connects and what it sends.
#[derive(Clone)]
struct Target {
    addr: std::net::SocketAddr,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    body: Bytes,
}

/// Counts the answer to one request, or its loss; whether the connection may take another.
async fn tally_answer(
    tally: &Tally,
    sent: Result<
        hyper::Response<hyper::body::Incoming>,
        hyper::client::conn::TrySendError<hyper::Request<Full<Bytes>>>,
    >,
) -> bool {
    match sent {
        Ok(response) => {
            let close = response
                .headers()
                .get("connection")
                .is_some_and(|v| v == "close");
            let status = response.status();
            let whole = response.into_body().collect().await;
            if status != 200 || whole.is_err() {
                tally.lost.fetch_add(1, Ordering::SeqCst);
                tally
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("status {status}, body {:?}", whole.err()));
                return false;
            }
            tally.answered.fetch_add(1, Ordering::SeqCst);
            if close {
                tally.told_to_close.fetch_add(1, Ordering::SeqCst);
            }
            !close
        }
        Err(mut e) => {
            if e.take_message().is_none() {
                tally.lost.fetch_add(1, Ordering::SeqCst);
                tally.errors.lock().unwrap().push(e.error().to_string());
            }
            false
        }
    }
}

/// One keep-alive client: a connection at a time, requests one after another with `pause`
/// between them (clients whose connections sit idle in a pool for a while), a new connection
/// when the server said `Connection: close` or closed one between requests. Stops when a new
/// connection is refused after SIGTERM (the listener closed: routing elsewhere is the
/// Service's job), or at `until`.
async fn client(
    Target {
        addr,
        host,
        tls,
        body,
    }: Target,
    pause: Duration,
    terminated: Arc<AtomicBool>,
    tally: Arc<Tally>,
    until: tokio::time::Instant,
) {
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    while tokio::time::Instant::now() < until {
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
            assert!(
                terminated.load(Ordering::SeqCst),
                "connection refused before SIGTERM"
            );
            return;
        };
        // A handshake cut short writes no request: not a lost write.
        let Ok(stream) = connector.connect(name.clone(), tcp).await else {
            continue;
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            if tokio::time::Instant::now() >= until {
                return;
            }
            // A connection the client already saw closed is not used, as Go's transport does.
            if sender.ready().await.is_err() {
                break;
            }
            let request = hyper::Request::post("/mutate")
                .header("host", "rancher-remap")
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap();
            // A request handed back unsent was never written (Go's transport retries those on
            // a new connection): only one that was written and not answered is lost.
            if !tally_answer(&tally, sender.try_send_request(request).await).await {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// Eight keep-alive clients on /mutate, SIGTERM in the middle; every request written on an open
/// connection must be answered. (Against the old shutdown, which closed idle connections at once,
/// 1 to 3 requests were lost in 4 runs of 5: closed under the clients' next requests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_loses_no_request_written_on_a_keep_alive_connection() {
    let mut server = ServeProcess::start(
        &[
            "--project-mappings",
            "p-ab12c=p-xy99z",
            "--shutdown-delay",
            "2",
        ],
        &[],
    )
    .await;
    let mut tls = client_config(&server.ca);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let target = Target {
        addr: server.webhook,
        host: server.host.clone(),
        tls,
        body: Bytes::from(data("create-deployment-migrated.json")),
    };
    let terminated = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let clients: Vec<_> = (0..8u64)
        .map(|i| {
            tokio::spawn(client(
                target.clone(),
                Duration::from_millis(i * 3),
                terminated.clone(),
                tally.clone(),
                until,
            ))
        })
        .collect();
    // SIGTERM once every client is busy.
    crate::common::eventually("traffic", Duration::from_secs(20), async || {
        tally.answered.load(Ordering::SeqCst) >= 400
    })
    .await;
    let before = tally.answered.load(Ordering::SeqCst);
    terminated.store(true, Ordering::SeqCst);
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server.log.lock().unwrap().clone())
    });
    for c in clients {
        c.await.unwrap();
    }
    let (status, log) = status.await.unwrap();
    assert!(status.success(), "{status}: {log}");
    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!(
        tally.lost.load(Ordering::SeqCst),
        0,
        "requests written on an open connection and not answered: {errors:?}"
    );
    let after = tally.answered.load(Ordering::SeqCst) - before;
    assert!(after > 0, "nothing was answered after SIGTERM");
    assert!(
        tally.told_to_close.load(Ordering::SeqCst) > 0,
        "no answer said Connection: close during the shutdown delay"
    );
    assert!(
        log.contains("answering with Connection: close"),
        "the log does not say the server is shutting down: {log}"
    );
}

/// On SIGTERM the server is unready at once and still answers until the delay ends.
#[tokio::test]
async fn sigterm_fails_readiness_at_once_and_keeps_answering() {
    let server = ServeProcess::start(
        &[
            "--project-mappings",
            "p-ab12c=p-xy99z",
            "--cluster-id",
            "c-m-4kq8z9rt",
            "--shutdown-delay",
            "30",
        ],
        &[],
    )
    .await;
    let ready = format!("http://{}/readyz", server.admin);
    assert_eq!(reqwest::get(&ready).await.unwrap().status(), 200);
    std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    crate::common::eventually("readiness to fail", Duration::from_secs(10), async || {
        reqwest::get(&ready).await.is_ok_and(|r| r.status() == 503)
    })
    .await;
    let (status, answer) = crate::common::post_bytes(
        &server.client(false),
        &server.url("/mutate"),
        data("create-deployment-migrated.json"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["response"]["patch"].is_string(), "{answer}");
}
