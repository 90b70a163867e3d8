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
    let pid = child.id();
    let client = client_config(&ca.pem);
    let body = Bytes::from(support::review_body());
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);

    // Faults: certificate rotation and mapping replacement, on their own threads.
    let rotations = Arc::new(AtomicU64::new(0));
    let rotator = {
        let (stop, rotations, tls_dir) = (stop.clone(), rotations.clone(), tls_dir.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(cert_every);
                n += 1;
                publish(&tls_dir, n, ca.issue());
                rotations.store(n, Ordering::Relaxed);
            }
        })
    };
    let replacements = Arc::new(AtomicU64::new(0));
    let replacer = {
        let (stop, replacements, mappings) = (stop.clone(), replacements.clone(), mappings.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                n += 1;
                let tmp = mappings.with_extension("tmp");
                std::fs::write(&tmp, &tables[(n % 2) as usize]).unwrap();
                std::fs::rename(&tmp, &mappings).unwrap();
                replacements.store(n, Ordering::Relaxed);
            }
        })
    };

    // Samples of the server's RSS and open descriptors, once a second while the load runs.
    let samples = Arc::new(Mutex::new(Vec::<(u64, usize)>::new()));
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, body, counts) = (client.clone(), body.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
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
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    stop.store(true, Ordering::Relaxed);
    for t in [rotator, replacer, sampler] {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let cert_reloads = log.matches("serving certificate reloaded").count() as u64;
    let cert_rejected = log.matches("new serving certificate rejected").count();
    let table_loads = log.matches("mapping table loaded").count() as u64;
    let (ok, failed) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let samples = samples.lock().unwrap().clone();
    let warm = (samples.len() / 5).max(5).min(samples.len());
    let steady = &samples[warm..];
    let quarter = (steady.len() / 4).max(1);
    let rss_early = steady.iter().take(quarter).map(|s| s.0).max().unwrap_or(0);
    let rss_late = steady
        .iter()
        .rev()
        .take(quarter)
        .map(|s| s.0)
        .max()
        .unwrap_or(0);
    let fds_early = steady.first().map_or(0, |s| s.1);
    let fds_late = steady.last().map_or(0, |s| s.1);
    let fds_max = steady.iter().map(|s| s.1).max().unwrap_or(0);

    println!();
    println!(
        "soak: {seconds} s, {connections} connections, certificate every {} s, mappings every 1 s",
        cert_every.as_secs()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| requests answered with a patch | {ok} ({:.0}/s) |",
        ok as f64 / elapsed
    );
    println!("| failed requests | {failed} |");
    println!(
        "| certificate rotations / reloads seen / rejected | {} / {cert_reloads} / {cert_rejected} |",
        rotations.load(Ordering::Relaxed)
    );
    println!(
        "| mapping replacements / tables loaded | {} / {table_loads} |",
        replacements.load(Ordering::Relaxed)
    );
    println!(
        "| RSS after warm-up, first quarter max → last quarter max | {:.1} → {:.1} MiB |",
        rss_early as f64 / 1024.0,
        rss_late as f64 / 1024.0
    );
    println!(
        "| open fds after warm-up: first → last (max) | {fds_early} → {fds_late} ({fds_max}) |"
    );

    let mut problems = Vec::new();
    if failed > 0 {
        let errors = counts.errors.lock().unwrap();
        problems.push(format!(
            "{failed} failed requests, e.g. {:?}",
            &errors[..errors.len().min(3)]
        ));
    }
    let rotated = rotations.load(Ordering::Relaxed);
    if cert_reloads + 2 < rotated || cert_rejected > 0 {
        problems.push(format!(
            "{rotated} rotations but {cert_reloads} reloads, {cert_rejected} rejected"
        ));
    }
    if table_loads < replacements.load(Ordering::Relaxed) / 2 {
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
