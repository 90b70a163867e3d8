//! What the load-driving benches share: the TLS client side, /proc readings, and the real
//! `rancher-remap serve` process.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

#[path = "../../tests/support/serve_command.rs"]
mod serve_command;
use serve_command::serve_command;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// User + system CPU time of a process (clock ticks are 1/100 s on Linux).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`); 0 if unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `rancher-remap serve` on loopback port 0 with `dir/tls.crt` and `dir/tls.key` and `args`,
/// logging JSON (level from LOAD_RUST_LOG, default info) to `log_path`; returns the process (the
/// caller ends it) and its webhook address, read from the "serving" line.
pub fn spawn_serve(dir: &Path, args: &[&OsStr], log_path: &Path) -> (Child, SocketAddr) {
    spawn_serve_bin(env!("CARGO_BIN_EXE_rancher-remap"), dir, args, log_path)
}

/// As [`spawn_serve`], with another build of `rancher-remap` (a baseline to compare with).
#[allow(clippy::zombie_processes)] // returned: the caller ends and reaps it
pub fn spawn_serve_bin(
    bin: &str,
    dir: &Path,
    args: &[&OsStr],
    log_path: &Path,
) -> (Child, SocketAddr) {
    let log = std::fs::File::create(log_path).unwrap();
    let mut child = serve_command(bin, dir)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("LOAD_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start; log in {}", log_path.display());
        }
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "serving").then(|| v["webhook_addr"].as_str()?.parse().ok())?
        });
        if let Some(addr) = found {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 keep-alive connection over TLS, verifying the CA and the `localhost` SAN.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(
        addr: SocketAddr,
        client: &Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(client.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    pub async fn post(&mut self, body: &Bytes) -> Result<(u16, Bytes), hyper::Error> {
        self.sender.ready().await?;
        let req = hyper::Request::post("/mutate")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}
