//! Soak under faults (issue 7): the real `rancher-remap serve` answers `/mutate` on 200 TLS
//! keep-alive connections while its serving certificate is rotated every 3 s (kubelet's atomic
//! `..data` symlink swap, new key each time, same CA) and its mappings file is replaced every
//! second. Pass: zero failed requests, every rotation and reload taken, RSS flat within 10 %
//! after warm-up, no file-descriptor growth. Exit status 1 otherwise.
//!
//! Run: `make soak` (`cargo bench --bench soak`). Knobs: SOAK_SECONDS (default 60),
//! SOAK_CONNECTIONS (200), SOAK_CERT_SECONDS (3). Loopback only; stops by itself; the server
//! process is ended by its id.

#[path = "support/net.rs"]
mod net;
mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use net::{client_config, env_or, open_fds, status_kib, Conn};

/// The CA the test client trusts, and serving pairs issued from it on demand.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "soak CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A fresh key and certificate for `localhost`.
    fn issue(&self) -> (String, String) {
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (
            leaf.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

/// Writes version `n` of the pair as kubelet updates a mounted Secret: a new timestamped
/// folder, then one atomic rename of the `..data` symlink onto it.
fn publish(dir: &Path, n: u64, (cert, key): (String, String)) {
    let version = format!("..v{n}");
    std::fs::create_dir_all(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join(&version).join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(name), &link).unwrap();
        }
    }
    if n >= 2 {
        let _ = std::fs::remove_dir_all(dir.join(format!("..v{}", n - 2)));
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// The faults, each on its own thread until `stop`: a new serving pair every `cert_every`, a
/// new mappings file (alternating `tables`) every second. Counts what each has done.
struct Faults {
    stop: Arc<AtomicBool>,
    rotations: Arc<AtomicU64>,
    replacements: Arc<AtomicU64>,
}

impl Faults {
    fn start(
        ca: Ca,
        tls_dir: PathBuf,
        cert_every: Duration,
        mappings: PathBuf,
        tables: [String; 2],
    ) -> (Faults, Vec<std::thread::JoinHandle<()>>) {
        let faults = Faults {
            stop: Arc::new(AtomicBool::new(false)),
            rotations: Arc::new(AtomicU64::new(0)),
            replacements: Arc::new(AtomicU64::new(0)),
        };
        let rotator = faults.every(cert_every, &faults.rotations, move |n| {
            publish(&tls_dir, n, ca.issue())
        });
        let replacer = faults.every(Duration::from_secs(1), &faults.replacements, move |n| {
            let tmp = mappings.with_extension("tmp");
            std::fs::write(&tmp, &tables[(n % 2) as usize]).unwrap();
            std::fs::rename(&tmp, &mappings).unwrap();
        });
        (faults, vec![rotator, replacer])
    }

    /// Runs `fault(n)` every `period` until stopped, counting in `done`.
    fn every(
        &self,
        period: Duration,
        done: &Arc<AtomicU64>,
        fault: impl Fn(u64) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let (stop, done) = (self.stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                n += 1;
                fault(n);
                done.store(n, Ordering::Relaxed);
            }
        })
    }
}

/// The server's RSS (KiB) and open descriptors, once a second.
type Samples = Arc<Mutex<Vec<(u64, usize)>>>;

/// Samples the server until `end`.
fn sample(pid: u32, end: Instant) -> (Samples, std::thread::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        std::thread::spawn(move || {
            while Instant::now() + Duration::from_secs(1) < end {
                std::thread::sleep(Duration::from_secs(1));
                samples
                    .lock()
                    .unwrap()
                    .push((status_kib(pid, "VmRSS"), open_fds(pid)));
            }
        })
    };
    (samples, sampler)
}

/// `connections` clients posting the review on keep-alive connections until `end`.
fn load(
    connections: usize,
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
    counts: &Arc<Counts>,
    end: Instant,
) {
    let body = Bytes::from(support::review_body());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (client, body, counts) = (client.clone(), body.clone(), counts.clone());
                tokio::spawn(post_until(addr, client, body, counts, end))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// One client: posts `body` until `end`, reopening its connection when it closes.
async fn post_until(
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
    body: Bytes,
    counts: Arc<Counts>,
    end: Instant,
) {
    let mut conn: Option<Conn> = None;
    while Instant::now() < end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(addr, &client).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    fail(&counts, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match c.post(&body).await {
            Ok((200, answer)) if contains(&answer, b"\"patchType\":\"JSONPatch\"") => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, answer)) => fail(
                &counts,
                format!("{status}: {}", String::from_utf8_lossy(&answer)),
            ),
            Err(e) => {
                // A closed keep-alive connection is reopened; the request counts
                // as failed (kube-apiserver would have seen it fail).
                fail(&counts, format!("request: {e}"));
                conn = None;
            }
        }
    }
}

/// What the soak saw.
struct Report {
    elapsed: f64,
    ok: u64,
    failed: u64,
    rotations: u64,
    replacements: u64,
    cert_reloads: u64,
    cert_rejected: usize,
    table_loads: u64,
    /// Max RSS (KiB) in the first and the last quarter after warm-up.
    rss: (u64, u64),
    /// Open fds after warm-up: first, last, max.
    fds: (usize, usize, usize),
}

impl Report {
    fn new(
        elapsed: f64,
        counts: &Counts,
        faults: &Faults,
        log: &str,
        samples: &[(u64, usize)],
    ) -> Report {
        let warm = (samples.len() / 5).max(5).min(samples.len());
        let steady = &samples[warm..];
        let quarter = (steady.len() / 4).max(1);
        let rss_max = |s: &mut dyn Iterator<Item = &(u64, usize)>| {
            s.take(quarter).map(|s| s.0).max().unwrap_or(0)
        };
        Report {
            elapsed,
            ok: counts.ok.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            rotations: faults.rotations.load(Ordering::Relaxed),
            replacements: faults.replacements.load(Ordering::Relaxed),
            cert_reloads: log.matches("serving certificate reloaded").count() as u64,
            cert_rejected: log.matches("new serving certificate rejected").count(),
            table_loads: log.matches("mapping table loaded").count() as u64,
            rss: (
                rss_max(&mut steady.iter()),
                rss_max(&mut steady.iter().rev()),
            ),
            fds: (
                steady.first().map_or(0, |s| s.1),
                steady.last().map_or(0, |s| s.1),
                steady.iter().map(|s| s.1).max().unwrap_or(0),
            ),
        }
    }

    fn print(&self) {
        let Report {
            ok,
            failed,
            cert_reloads,
            cert_rejected,
            table_loads,
            ..
        } = self;
        let ((rss_early, rss_late), (fds_early, fds_late, fds_max)) = (self.rss, self.fds);
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| requests answered with a patch | {ok} ({:.0}/s) |",
            *ok as f64 / self.elapsed
        );
        println!("| failed requests | {failed} |");
        println!(
            "| certificate rotations / reloads seen / rejected | {} / {cert_reloads} / {cert_rejected} |",
            self.rotations
        );
        println!(
            "| mapping replacements / tables loaded | {} / {table_loads} |",
            self.replacements
        );
        println!(
            "| RSS after warm-up, first quarter max → last quarter max | {:.1} → {:.1} MiB |",
            rss_early as f64 / 1024.0,
            rss_late as f64 / 1024.0
        );
        println!(
            "| open fds after warm-up: first → last (max) | {fds_early} → {fds_late} ({fds_max}) |"
        );
    }

    fn problems(&self, counts: &Counts) -> Vec<String> {
        let Report {
            failed,
            rotations,
            cert_reloads,
            cert_rejected,
            table_loads,
            ..
        } = *self;
        let ((rss_early, rss_late), (fds_early, fds_late, _)) = (self.rss, self.fds);
        let mut problems = Vec::new();
        if failed > 0 {
            let errors = counts.errors.lock().unwrap();
            problems.push(format!(
                "{failed} failed requests, e.g. {:?}",
                &errors[..errors.len().min(3)]
            ));
        }
        if cert_reloads + 2 < rotations || cert_rejected > 0 {
            problems.push(format!(
                "{rotations} rotations but {cert_reloads} reloads, {cert_rejected} rejected"
            ));
        }
        if table_loads < self.replacements / 2 {
            problems.push(format!("only {table_loads} tables loaded"));
        }
        if rss_late as f64 > rss_early as f64 * 1.10 {
            problems.push(format!(
                "RSS grew {rss_early} → {rss_late} KiB after warm-up"
            ));
        }
        // Connections are all open by then; a reload must not leave a file open.
        if fds_late > fds_early + 4 {
            problems.push(format!("open fds grew {fds_early} → {fds_late}"));
        }
        problems
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("soak: run with `cargo bench --bench soak` (or `make soak`)");
        return;
    }
    let seconds: u64 = env_or("SOAK_SECONDS", 60);
    let connections: usize = env_or("SOAK_CONNECTIONS", 200);
    let cert_every = Duration::from_secs(env_or("SOAK_CERT_SECONDS", 3));
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let ca = Ca::new();
    publish(&tls_dir, 0, ca.issue());
    // Two tables that answer the review alike (the patch must not depend on which is in force).
    let mappings = dir.path().join("mappings.txt");
    let tables = [
        support::mappings(1000),
        format!("{},p-extra=p-other", support::mappings(1000)),
    ];
    std::fs::write(&mappings, &tables[0]).unwrap();
    let log_path = dir.path().join("serve.log");
    let (mut child, addr) = net::spawn_serve(
        &tls_dir,
        &[OsStr::new("--mappings-file"), mappings.as_os_str()],
        &log_path,
    );
    let client = client_config(&ca.pem);
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);

    let (faults, mut threads) = Faults::start(ca, tls_dir, cert_every, mappings, tables);
    let (samples, sampler) = sample(child.id(), end);
    threads.push(sampler);
    load(connections, addr, client, &counts, end);
    faults.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let report = Report::new(elapsed, &counts, &faults, &log, &samples.lock().unwrap());
    println!();
    println!(
        "soak: {seconds} s, {connections} connections, certificate every {} s, mappings every 1 s",
        cert_every.as_secs()
    );
    report.print();
    let problems = report.problems(&counts);
    if problems.is_empty() {
        println!("soak: pass");
    } else {
        for p in &problems {
            println!("soak: FAIL: {p}");
        }
        std::process::exit(1);
    }
}

fn fail(counts: &Counts, what: String) {
    counts.failed.fetch_add(1, Ordering::Relaxed);
    let mut errors = counts.errors.lock().unwrap();
    if errors.len() < 10 {
        errors.push(what);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
