//! Reconnect storm (issue 7): 1,000 clients open TLS connections to the real `rancher-remap
//! serve` at the same moment, as API servers do after a restart, and each sends one `/mutate`
//! review. Reported: time from each client's first byte (its TCP connect) to its answer — p50,
//! p99, max, and how many took longer than 0.5 s. Exit status 1 if any request failed.
//!
//! Then the latency one well-behaved client sees (1,000 sequential reviews on a keep-alive
//! connection): alone, beside 2,000 idle TLS connections, and beside 500 slowloris clients
//! trickling header bytes.
//!
//! Run: `make storm` (`cargo bench --bench storm`). Knobs: STORM_CLIENTS (1000), STORM_ROUNDS (3).
//! Loopback only; stops by itself; the server process is ended by its id.

#[path = "support/net.rs"]
mod net;
mod support;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net::{client_config, env_or, Conn};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("storm: run with `cargo bench --bench storm` (or `make storm`)");
        return;
    }
    let clients: usize = env_or("STORM_CLIENTS", 1000);
    let rounds: usize = env_or("STORM_ROUNDS", 3);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // ECDSA P-256 serving certificate, as `rancher-remap certs` and the cert-manager component
    // make: the handshake signature is the server's main cost in a storm.
    let g = rancher_remap::cli::certs::generate("rancher-remap", "storm", 1).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &g.serving.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &g.serving.key).unwrap();
    let mappings = dir.path().join("mappings.txt");
    std::fs::write(&mappings, support::mappings(1000)).unwrap();
    let (mut child, addr) = net::spawn_serve(
        dir.path(),
        &[OsStr::new("--mappings-file"), mappings.as_os_str()],
        &dir.path().join("serve.log"),
    );
    let client = client_config(&g.ca.cert);
    let body = Bytes::from(support::review_body());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!();
    println!("| round | clients | failed | p50 | p99 | max | over 0.5 s |");
    println!("|---|---|---|---|---|---|---|");
    let mut failed_total = 0;
    for round in 1..=rounds {
        let (mut times, failed) = runtime.block_on(storm(clients, addr, &client, &body));
        failed_total += failed;
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        let over = times
            .iter()
            .filter(|t| **t > Duration::from_millis(500))
            .count();
        println!(
            "| {round} | {clients} | {failed} | {} | {} | {} | {over} |",
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(*times.last().unwrap()),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!();
    println!("| one client's 1,000 sequential reviews | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (label, idle, trickling) in [
        ("alone", 0, 0),
        ("beside 2,000 idle TLS connections", 2000, 0),
        ("beside 500 slowloris clients", 0, 500),
    ] {
        let mut times = runtime.block_on(beside(addr, &client, &body, idle, trickling));
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "| {label} | {:.2} ms | {:.2} ms | {:.2} ms |",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    if failed_total > 0 {
        println!("storm: FAIL: {failed_total} requests failed");
        std::process::exit(1);
    }
}

/// All clients released at once; each connects, handshakes, posts one review. Returns each
/// answered client's time from its connect to its answer, and the number that failed.
async fn storm(
    clients: usize,
    addr: std::net::SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    body: &Bytes,
) -> (Vec<Duration>, usize) {
    let go = Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (go, client, body) = (go.clone(), client.clone(), body.clone());
            tokio::spawn(async move {
                go.wait().await;
                let first_byte = Instant::now();
                let mut conn = Conn::open(addr, &client).await.ok()?;
                match conn.post(&body).await {
                    Ok((200, answer)) if !answer.is_empty() => Some(first_byte.elapsed()),
                    _ => None,
                }
            })
        })
        .collect();
    let mut times = Vec::with_capacity(clients);
    let mut failed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(d) => times.push(d),
            None => failed += 1,
        }
    }
    (times, failed)
}

/// Latencies of 1,000 sequential reviews on one keep-alive connection, while `idle` other TLS
/// connections sit open and `trickling` clients send a header byte every 100 ms.
async fn beside(
    addr: std::net::SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    body: &Bytes,
    idle: usize,
    trickling: usize,
) -> Vec<Duration> {
    use tokio::io::AsyncWriteExt;
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut held = Vec::new();
    for _ in 0..idle {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        held.push(connector.connect(name.clone(), tcp).await.unwrap());
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tricklers = Vec::new();
    for _ in 0..trickling {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        let stop = stop.clone();
        tricklers.push(tokio::spawn(async move {
            for b in b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || tls.write_all(&[*b]).await.is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    let mut conn = Conn::open(addr, client).await.unwrap();
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let sent = Instant::now();
        let (status, _) = conn.post(body).await.unwrap();
        assert_eq!(status, 200);
        times.push(sent.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tricklers {
        let _ = t.await;
    }
    drop(held);
    times
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
