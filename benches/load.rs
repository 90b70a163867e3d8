//! Load bench for `/mutate` (issue 3): the real `rancher-remap serve` process against a no-op
//! axum + rustls server, both driven over TLS keep-alive HTTP/1.1 (as kube-apiserver calls
//! webhooks) from this process, on loopback.
//!
//! For each target: warm-up, then a closed loop at full speed (requests/s, p50, p99), then an
//! open loop paced at half of that rate (p50, p99), then the server process's peak RSS
//! (`VmHWM`). Every response is checked (status 200; the real server must answer with a patch).
//!
//! Run: `cargo bench --bench load` (or `make load-bench`). Figures in BENCHMARKS.md.
//! Knobs (environment): LOAD_CONNECTIONS (default 16), LOAD_SECONDS (default 5),
//! LOAD_BASELINE_BIN (another `rancher-remap` build, e.g. of an earlier commit: measured beside
//! this one on the same review and table sizes, each row right after this build's).
//! Bounded: every phase has a fixed duration; the server processes are ended by their id.

#[path = "support/net.rs"]
mod net;
mod support;

use net::{client_config, cpu_time, env_or, provider, Conn};
use std::ffi::OsStr;

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// Set in the environment of the child that runs the no-op server (and, with FLOOR_ENV too,
/// the floor server: `1` answers the floor's own allow, `same` the webhook's answer).
const NOOP_ENV: &str = "RANCHER_REMAP_LOAD_NOOP";
const FLOOR_ENV: &str = "RANCHER_REMAP_LOAD_FLOOR";

/// What a baseline server answers.
#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    /// A fixed review, the body unread beyond its bytes.
    Noop,
    /// Checks the JSON, echoes the uid.
    Floor,
    /// Checks the JSON, sends the webhook's own answer for the bench review (3 KB: patch,
    /// warnings, audit annotation): what the answer's size costs, apart from its making.
    FloorSameAnswer,
}
const FIXED_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

fn main() {
    if std::env::var_os(NOOP_ENV).is_some() {
        return run_baseline_server();
    }
    // `cargo test --benches` runs bench targets with no `--bench` flag: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("load bench: run with `cargo bench --bench load`");
        return;
    }
    let connections: usize = env_or("LOAD_CONNECTIONS", 16);
    let seconds: u64 = env_or("LOAD_SECONDS", 5);
    let duration = Duration::from_secs(seconds);

    let dir = tempfile::tempdir().unwrap();
    let generated = rancher_remap::cli::certs::generate("rancher-remap", "bench", 1).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &generated.serving.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &generated.serving.key).unwrap();
    let client = client_config(&generated.ca.cert);
    let body = Bytes::from(support::review_body());
    println!(
        "review body: {} bytes; {connections} keep-alive connections; {seconds} s per phase",
        body.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let noop = Target::noop(dir.path());
    let run_target = |label: &str, target: Target| {
        runtime.block_on(measure(
            label,
            target,
            &client,
            &body,
            connections,
            duration,
        ))
    };
    rows.push(run_target("no-op axum+rustls", noop));
    rows.push(run_target(
        "floor: checks the JSON, echoes uid",
        Target::baseline(dir.path(), Baseline::Floor),
    ));
    rows.push(run_target(
        "floor + the webhook's answer bytes",
        Target::baseline(dir.path(), Baseline::FloorSameAnswer),
    ));
    let baseline_bin = std::env::var("LOAD_BASELINE_BIN").ok();
    for entries in [1_000usize, 100_000] {
        let target = Target::rancher_remap(dir.path(), entries, None);
        let label = format!("rancher-remap, {entries} entries");
        rows.push(run_target(&label, target));
        if let Some(bin) = &baseline_bin {
            let target = Target::rancher_remap(dir.path(), entries, Some(bin));
            let label = format!("baseline {bin}, {entries} entries");
            rows.push(run_target(&label, target));
        }
    }

    rows.push(reloads_under_load(dir.path(), &run_target));

    print_rows(&rows);
}

/// The child process that serves a baseline (`NOOP_ENV` set: no-op, or a floor with FLOOR_ENV).
fn run_baseline_server() {
    let dir = PathBuf::from(std::env::var(NOOP_ENV).unwrap());
    let baseline = match std::env::var(FLOOR_ENV).as_deref() {
        Ok("same") => Baseline::FloorSameAnswer,
        Ok(_) => Baseline::Floor,
        Err(_) => Baseline::Noop,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(noop_server(&dir, baseline));
}

/// The same 100,000-entry table replaced every 500 ms while the load runs (atomic renames,
/// as kubelet updates a mounted ConfigMap; the server polls the file every second and builds
/// each new table on a blocking thread): reloads must not move p99.
fn reloads_under_load(dir: &Path, run_target: &dyn Fn(&str, Target) -> Row) -> Row {
    let entries = 100_000;
    let target = Target::rancher_remap(dir, entries, None);
    let path = dir.join(format!("mappings-{entries}.txt"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = {
        let stop = stop.clone();
        let (a, b) = (
            support::mappings(entries),
            format!("{},p-extra=p-other", support::mappings(entries)),
        );
        std::thread::spawn(move || {
            let tmp = path.with_extension("tmp");
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                flip = !flip;
                std::fs::write(&tmp, if flip { &b } else { &a }).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // Replaced every 500 ms, followed by a 1 s poll: a new table about every second.
    let label = format!("rancher-remap, {entries} entries, rebuilt about every second");
    let row = run_target(&label, target);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reloader.join().unwrap();
    row
}

fn print_rows(rows: &[Row]) {
    println!();
    println!("| target | req/s (max) | p50 | p99 | server CPU/req | req/s (paced) | p50 | p99 | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.1} µs | {:.0} | {} | {} | {:.1} MiB |",
            r.label,
            r.max.rate,
            ms(r.max.p50),
            ms(r.max.p99),
            r.max.cpu_per_request.as_secs_f64() * 1e6,
            r.paced.rate,
            ms(r.paced.p50),
            ms(r.paced.p99),
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    let (base, floor, same) = (rows[0].max.rate, rows[1].max.rate, rows[2].max.rate);
    for r in &rows[1..] {
        println!(
            "{}: {:.0} % of the no-op throughput, {:.0} % of the floor's, {:.0} % of the floor with the same answer",
            r.label,
            100.0 * r.max.rate / base,
            100.0 * r.max.rate / floor,
            100.0 * r.max.rate / same
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A server process under test.
struct Target {
    child: Child,
    addr: SocketAddr,
    /// The real server answers with a patch; the no-op one with a fixed allow.
    expects_patch: bool,
}

impl Target {
    /// This bench binary again, serving the no-op handler; it prints its address.
    fn noop(dir: &Path) -> Target {
        Target::baseline(dir, Baseline::Noop)
    }

    /// This bench binary again, serving a baseline handler; it prints its address.
    fn baseline(dir: &Path, baseline: Baseline) -> Target {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(NOOP_ENV, dir);
        match baseline {
            Baseline::Noop => {}
            Baseline::Floor => {
                cmd.env(FLOOR_ENV, "1");
            }
            Baseline::FloorSameAnswer => {
                cmd.env(FLOOR_ENV, "same");
            }
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Target {
            addr: line.trim().parse().unwrap(),
            child,
            expects_patch: baseline == Baseline::FloorSameAnswer,
        }
    }

    /// `rancher-remap serve` with an `entries`-entry mappings file, logging (JSON, level info, one
    /// line per admission as in production) to a file; the address comes from the "serving" line.
    /// `bin`: another build to run (this one's by default).
    fn rancher_remap(dir: &Path, entries: usize, bin: Option<&str>) -> Target {
        let mappings = dir.join(format!("mappings-{entries}.txt"));
        std::fs::write(&mappings, support::mappings(entries)).unwrap();
        let log_path = dir.join(format!("serve-{entries}.log"));
        let (child, addr) = net::spawn_serve_bin(
            bin.unwrap_or(env!("CARGO_BIN_EXE_rancher-remap")),
            dir,
            &[OsStr::new("--mappings-file"), mappings.as_os_str()],
            &log_path,
        );
        Target {
            child,
            addr,
            expects_patch: true,
        }
    }

    /// CPU time (user + system) the process has used so far, from /proc.
    fn cpu_time(&self) -> Duration {
        cpu_time(self.child.id())
    }

    /// Peak resident set of the process, from /proc.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Phase {
    rate: f64,
    /// Server CPU time per request (the full-speed phase).
    cpu_per_request: Duration,
    p50: Duration,
    p99: Duration,
}

struct Row {
    label: String,
    max: Phase,
    paced: Phase,
    peak_rss_kib: u64,
}

async fn measure(
    label: &str,
    target: Target,
    client: &Arc<rustls::ClientConfig>,
    body: &Bytes,
    connections: usize,
    duration: Duration,
) -> Row {
    // The real server answers 503 until its table is loaded; the no-op one is ready at once.
    if target.expects_patch {
        // 503 until the table is loaded: wait for the first 200.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "{label}: never ready");
            if let Ok(mut c) = Conn::open(target.addr, client).await {
                if c.post(body).await.map(|(s, _)| s == 200).unwrap_or(false) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("{label}: warm-up");
    run(
        &target,
        client,
        body,
        connections,
        Duration::from_secs(1),
        None,
    )
    .await;
    eprintln!("{label}: full speed");
    let (cpu_before, client_before) = (target.cpu_time(), cpu_time(std::process::id()));
    let mut max = run(&target, client, body, connections, duration, None).await;
    let requests = max.rate * duration.as_secs_f64();
    max.cpu_per_request = (target.cpu_time() - cpu_before).div_f64(requests);
    eprintln!(
        "{label}: server CPU {:.1} µs/request, load generator {:.1} µs/request",
        max.cpu_per_request.as_secs_f64() * 1e6,
        (cpu_time(std::process::id()) - client_before).as_secs_f64() * 1e6 / requests
    );
    eprintln!("{label}: paced at {:.0} req/s", max.rate / 2.0);
    let paced = run(
        &target,
        client,
        body,
        connections,
        duration,
        Some(max.rate / 2.0),
    )
    .await;
    Row {
        label: label.to_string(),
        max,
        paced,
        peak_rss_kib: target.peak_rss_kib(),
    }
}

/// `connections` keep-alive connections for `duration`: as fast as answers come (closed loop),
/// or each sending on a fixed schedule so that together they offer `rate` requests/s.
async fn run(
    target: &Target,
    client: &Arc<rustls::ClientConfig>,
    body: &Bytes,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Phase {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, body, addr, expects_patch) = (
            client.clone(),
            body.clone(),
            target.addr,
            target.expects_patch,
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &client).await.expect("connect");
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut ticker = rate.map(|r| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(connections as f64 / r));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < end {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let sent = Instant::now();
                let (status, answer) = conn.post(&body).await.expect("request failed");
                latencies.push(sent.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                if expects_patch && latencies.len() == 1 {
                    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
                    assert_eq!(v["response"]["patchType"], "JSONPatch", "{v}");
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Phase {
        rate: all.len() as f64 / elapsed,
        cpu_per_request: Duration::ZERO,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// The baselines: axum + rustls (same provider, same ALPN, same hyper-util connection builder)
/// with a handler that reads the body and returns a fixed review (no-op), or the floor's answer.
/// Prints its address on stdout.
async fn noop_server(dir: &Path, baseline: Baseline) {
    use axum::routing::post;
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    // The webhook's answer for the bench review, made once (1,000-entry table, as measured).
    let same: Arc<Vec<u8>> = Arc::new({
        use rancher_remap::server::mutate;
        let mappings =
            rancher_remap::mapping::objects::Mappings::from_text(&support::mappings(1_000))
                .unwrap();
        let body = support::review_body();
        let mut req = mutate::decode(&body, &mappings.table).unwrap();
        mutate::answer(&mut req, &mappings, &Default::default()).body
    });
    let app = match baseline {
        Baseline::Floor | Baseline::FloorSameAnswer => axum::Router::new().route(
            "/mutate",
            post(move |body: Bytes| async move {
                match support::floor_answer(&body) {
                    Ok(answer) => (
                        axum::http::StatusCode::OK,
                        [("content-type", "application/json")],
                        match baseline {
                            Baseline::FloorSameAnswer => same.to_vec(),
                            _ => answer,
                        },
                    ),
                    Err(_) => (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("content-type", "application/json")],
                        b"{}".to_vec(),
                    ),
                }
            }),
        ),
        Baseline::Noop => axum::Router::new().route(
            "/mutate",
            post(|body: Bytes| async move {
                std::hint::black_box(body);
                ([("content-type", "application/json")], FIXED_REVIEW)
            }),
        ),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let service = hyper_util::service::TowerToHyperService::new(app);
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
