//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The destination cluster the tests' tables map to (deploy/examples' table).
pub const CLUSTER: &str = "c-m-4kq8z9rt";

/// A destination server's settings: this cluster's ID known (without it a destination server
/// is never ready), the rest as defaulted.
pub fn destination() -> rancher_remap::rewrite::MutateSettings {
    rancher_remap::rewrite::MutateSettings {
        cluster_id: Some(CLUSTER.to_string()),
        ..Default::default()
    }
}

/// The webhook's decision on an object in scope, as `options` say: what the tests hold the
/// webhook's answers, the `rewrite` command and the audit to.
pub fn rewrite<'a, 't>(
    obj: &'a serde_json::Value,
    mappings: &'t rancher_remap::mapping::objects::Mappings,
    options: &rancher_remap::rewrite::Options,
) -> rancher_remap::rewrite::Decision<'a, 't> {
    let settings = rancher_remap::rewrite::MutateSettings {
        unmapped: options.unmapped,
        scope: rancher_remap::rewrite::Scope::All,
        ..Default::default()
    };
    rancher_remap::rewrite::decide_object(obj, false, options.migrated, mappings, &settings)
}

/// The built `rancher-remap` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rancher-remap"))
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rancher-remap");
    // The command may exit before reading (e.g. on invalid mappings): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The /metrics text of the admin listener at `admin`.
pub async fn admin_metrics(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POSTs `body` as JSON; the status and the JSON answer.
pub async fn post(
    c: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    post_bytes(c, url, serde_json::to_vec(body).unwrap()).await
}

/// POSTs `body`, as it is, labelled JSON; the status and the JSON answer.
pub async fn post_bytes(
    c: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A file in the repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fixture from tests/data.
pub fn data(name: &str) -> String {
    std::fs::read_to_string(repo("tests/data").join(name)).unwrap()
}

/// `request.object` of a fixture review.
pub fn fixture_object(name: &str) -> serde_json::Value {
    let review: serde_json::Value = serde_json::from_str(&data(name)).unwrap();
    review["request"]["object"].clone()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- A real server on port 0, with certificates made here ----

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rancher_remap::cli::serve::AllMetrics;
use rancher_remap::rewrite::MutateSettings;
use rancher_remap::server::routes::AppState;
use rancher_remap::server::{Server, Timing};
use rancher_remap::serving_cert::{CertFiles, CertMetrics};
use rancher_remap::source::Source;
use rustls::pki_types::pem::PemObject;

pub struct TestServer {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca: String,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Writes a fresh CA + serving pair into `dir`; returns the CA PEM.
pub fn write_certs(dir: &std::path::Path) -> String {
    let g = rancher_remap::cli::certs::generate("rancher-remap", "test", 1).unwrap();
    std::fs::write(dir.join("tls.crt"), &g.serving.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &g.serving.key).unwrap();
    g.ca.cert
}

pub async fn start(source: Source, settings: MutateSettings) -> TestServer {
    start_timed(source, settings, |t| t).await
}

/// As [`start`], with the test's own timeouts.
pub async fn start_timed(
    source: Source,
    settings: MutateSettings,
    adjust: impl FnOnce(Timing) -> Timing,
) -> TestServer {
    start_fed(Feed::Source(source), settings, adjust).await
}

/// Where a test server's mappings come from.
pub enum Feed {
    /// A command-line source.
    Source(Source),
    /// The mapping ConfigMap, watched with this client (pointed at a fake API server).
    Watch(kube::Client, rancher_remap::source::ConfigMapRef),
    /// None: `serve --validate-only`.
    ValidateOnly,
}

/// As [`start`], fed from a ConfigMap watched through `client`.
pub async fn start_watching(
    client: kube::Client,
    at: rancher_remap::source::ConfigMapRef,
    settings: MutateSettings,
) -> TestServer {
    start_fed(Feed::Watch(client, at), settings, |t| t).await
}

/// As [`start`], in `--validate-only` mode (no mapping source).
pub async fn start_validate_only(settings: MutateSettings) -> TestServer {
    start_fed(Feed::ValidateOnly, settings, |t| t).await
}

/// A server's state as `serve` makes it, with the table in force it reads and the serving
/// certificate's metrics.
pub fn app_state(
    settings: MutateSettings,
    validate_only: bool,
    timing: &Timing,
) -> (
    Arc<AppState>,
    Arc<rancher_remap::live::LiveMappings>,
    CertMetrics,
) {
    let metrics = AllMetrics::register();
    let (log, _written) = rancher_remap::server::admission_log::AdmissionLog::start(
        metrics.server.log_lines_dropped.clone(),
    );
    let live = Arc::new(rancher_remap::live::LiveMappings::new(
        metrics.table,
        !settings.migration_users.is_empty(),
        settings.cluster_id.clone(),
    ));
    let state = Arc::new(AppState {
        mappings: live.clone(),
        settings,
        metrics: metrics.server,
        log,
        max_body_bytes: 64 * 1024,
        validate_only,
        timing: timing.clone(),
    });
    (state, live, metrics.certificate)
}

async fn start_fed(
    feed: Feed,
    settings: MutateSettings,
    adjust: impl FnOnce(Timing) -> Timing,
) -> TestServer {
    // The process-wide default (for plain clients such as reqwest::get), as main installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let timing = adjust(Timing {
        cert_poll: Duration::from_millis(100),
        drain: Duration::from_secs(10),
        shutdown_delay: Duration::ZERO,
        ..Timing::default()
    });
    let (state, live, certificate) =
        app_state(settings, matches!(feed, Feed::ValidateOnly), &timing);
    match feed {
        Feed::Source(source) => {
            rancher_remap::source::start(source, live, Duration::from_millis(100), None)
                .await
                .unwrap()
        }
        Feed::Watch(client, at) => {
            tokio::spawn(rancher_remap::source::configmap::follow(client, at, live));
        }
        Feed::ValidateOnly => {}
    }
    let files = CertFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let credentials = files.credentials(certificate, timing.cert_poll).unwrap();
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        credentials,
        state.clone(),
    )
    .await
    .unwrap();
    let (webhook, admin) = (server.webhook_addr, server.admin_addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    TestServer {
        webhook,
        admin,
        dir,
        ca,
        state,
        stop: Some(tx),
        handle,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.webhook.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A client that trusts only `ca` and checks the `localhost` SAN.
    pub fn client(&self, ca: &str, h2: bool) -> reqwest::Client {
        tls_client(ca, h2, self.webhook)
    }

    /// The admin port's /metrics text.
    pub async fn metrics(&self) -> String {
        admin_metrics(self.admin).await
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A rustls client configuration that trusts only the CAs in `ca` (PEM), on the one provider.
pub fn client_config(ca: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(rancher_remap::crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Whether the PEM certificate `cert` chains to the PEM CA `ca` and is valid for `name` now, as
/// kube-apiserver checks a webhook's certificate against its caBundle.
pub fn verifies(ca: &[u8], cert: &[u8], name: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        rancher_remap::crypto::provider(),
    )
    .build()
    .unwrap();
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&cert, &[], &name, &[], rustls::pki_types::UnixTime::now())
        .map(|_| ())
}

/// The value of one metric series (`name{labels}`) in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

pub fn tls_client(ca: &str, h2: bool, addr: SocketAddr) -> reqwest::Client {
    tls_client_for("localhost", ca, h2, addr)
}

/// [`tls_client`] for the name `host` (resolved to `addr`).
pub fn tls_client_for(host: &str, ca: &str, h2: bool, addr: SocketAddr) -> reqwest::Client {
    let mut cfg = client_config(ca);
    cfg.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let b = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .resolve(host, addr)
        .timeout(Duration::from_secs(10));
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

/// Polls `f` until it is true or the deadline passes.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---- The real `serve` process, for what only a separate process shows (its log, its memory) ----

#[path = "../support/serve_command.rs"]
mod serve_command;
pub use serve_command::{serve_command, serve_command_without_certificates};

/// `rancher-remap serve` on loopback port 0 with certificates made here, stdout and stderr
/// captured. It is ours: dropped, it is killed by its id and reaped.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub ca: String,
    /// The name the client connects to and checks (resolved to the loopback listener).
    pub host: String,
    pub log: Arc<std::sync::Mutex<String>>,
    pub dir: tempfile::TempDir,
    /// The threads copying stdout and stderr into `log`; joined by `terminate`.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts it with `args` after the listen and certificate flags (JSON logs), and waits for
    /// its `serving` line.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        let ca = write_certs(dir.path());
        let cmd = serve_command(env!("CARGO_BIN_EXE_rancher-remap"), dir.path());
        ServeProcess::spawn(cmd, args, env, dir, ca).await
    }

    /// Starts it with certificates it keeps itself (`--cert-secret NS/NAME` in `args` or
    /// `env`) in the fake API server, and trusts the bundle the server stored there for the
    /// name `host` (the webhook Service's DNS name).
    pub async fn start_with_cert_secret(
        args: &[&str],
        env: &[(&str, &str)],
        fake: &crate::fake_api::FakeApi,
        (namespace, name): (&str, &str),
        host: &str,
    ) -> ServeProcess {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let cmd = serve_command_without_certificates(env!("CARGO_BIN_EXE_rancher-remap"));
        let mut p = ServeProcess::spawn(cmd, args, env, dir, String::new()).await;
        let secret = fake
            .get(&serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"namespace": namespace, "name": name}}))
            .expect("the server made its certificate Secret before serving");
        p.ca = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"]["ca-bundle.crt"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        p.host = host.to_string();
        p
    }

    /// Starts `cmd` (a `serve` command made by the caller) and waits for its `serving` line;
    /// the caller sets [`ServeProcess::ca`] and [`ServeProcess::host`] if it makes requests.
    pub async fn spawn_command(cmd: Command) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        ServeProcess::spawn(cmd, &[], &[], dir, String::new()).await
    }

    async fn spawn(
        mut cmd: Command,
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        ca: String,
    ) -> ServeProcess {
        use std::io::BufRead;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }));
        }
        let mut p = ServeProcess {
            child,
            webhook: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            ca,
            host: "localhost".to_string(),
            log,
            dir,
            readers,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = p.log.lock().unwrap().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "serving").then(|| {
                    let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
                    (addr("webhook_addr"), addr("admin_addr"))
                })
            });
            if let Some((webhook, admin)) = found {
                (p.webhook, p.admin) = (webhook, admin);
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("serve exited with {status}: {}", p.log.lock().unwrap());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not start: {}",
                p.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.webhook.port())
    }

    /// The admin port's /metrics text.
    pub async fn metrics(&self) -> String {
        admin_metrics(self.admin).await
    }

    /// A client that trusts only this server's CA and checks the name `host`.
    pub fn client(&self, h2: bool) -> reqwest::Client {
        tls_client_for(&self.host, &self.ca, h2, self.webhook)
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Open file descriptors (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// SIGTERM (to our own child, by its id), then its exit status; every log line is in (the
    /// readers end when the process closes its pipes, and are joined).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- The tools the Makefile installs (kubectl, helm, promtool, script) ----

/// Where the pinned tools are: RANCHER_REMAP_TOOLS (the Makefile sets it), else the folder
/// `make tools` fills.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("RANCHER_REMAP_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("build/tools/bin"))
}

/// PATH with the pinned tools first, for the scripts the tests run.
pub fn path_with_tools() -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(tools_dir()).chain(std::env::split_paths(&rest))).unwrap()
}

/// One of the tools `make tools` installs. A missing tool fails the test: a test that skips
/// proves nothing.
pub fn tool(name: &str) -> Command {
    let path = tools_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not installed: run `make tools` (make test does)",
        path.display()
    );
    let mut c = Command::new(path);
    c.env("PATH", path_with_tools());
    c
}
