//! A real control plane: etcd, kube-apiserver and kube-controller-manager from
//! `KUBEBUILDER_ASSETS` (envtest's convention), on loopback, started once per test binary and
//! shared by the cluster tests, each in namespaces of its own.
//!
//! Nothing here dials beyond 127.0.0.0/8: etcd refuses other listen addresses, the apiserver
//! routes Service-named webhooks through Endpoints (`--enable-aggregator-routing`; none exist,
//! so such a call fails without dialling a ClusterIP), and the webhooks the tests install are
//! called by URL at a name the apiserver alone resolves, through a private /etc/hosts, to the
//! loopback addresses of [`HOMES`]. The processes die with the test binary (parent-death signal,
//! and an exit hook that also removes their directory).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

/// Where each install's replicas listen. The apiserver resolves `rancher-remap.NS.svc` (the
/// chart's Service) to these addresses, in this order: one address is one replica; with two,
/// Go's dialer tries the second when the first refuses, as a Service with two endpoints does
/// when one is gone. The hosts file is written before the apiserver starts, so every namespace
/// a test installs into is named here.
pub const HOMES: &[(&str, &[&str])] = &[
    ("rr-rewrites", &["127.0.10.1"]),
    ("rr-mappings", &["127.0.11.1"]),
    ("rr-source", &["127.0.12.1"]),
    ("rr-replicas", &["127.0.13.1", "127.0.13.2", "127.0.13.3"]),
    ("rr-kustomize", &["127.0.14.1"]),
    ("rr-doctor", &["127.0.15.1"]),
    ("rr-audit", &["127.0.16.1"]),
    ("rr-rollover", &["127.0.17.1", "127.0.17.2"]),
    ("rr-projects", &["127.0.18.1"]),
    ("rr-policy", &["127.0.19.1"]),
    ("rr-rbac", &["127.0.21.1"]),
    ("rr-kustomize-source", &["127.0.20.1"]),
    ("rr-kustomize-overlay", &["127.0.22.1"]),
    ("rr-policy-chart", &["127.0.23.1"]),
];

/// The Service every install names (the chart's fullname for release `rancher-remap`, and the
/// kustomize install's).
pub const SERVICE: &str = "rancher-remap";

/// The identities the apiserver knows by token (besides ServiceAccounts).
pub const ADMIN: &str = "admin";
/// The identity Stork migrates with (a migration user; cluster-admin, as Stork's usually is).
pub const STORK: &str = "stork";
/// Somebody with no role at all.
pub const SOMEONE: &str = "someone";

/// The running control plane.
pub struct ControlPlane {
    /// Its state: certificates, tokens, kubeconfigs, etcd's data, the logs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA of the apiserver's serving certificate (PEM).
    pub ca: String,
    /// `kube-apiserver --version`, e.g. `Kubernetes v1.36.2`.
    pub version: String,
    tokens: BTreeMap<&'static str, String>,
}

static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The cluster tests install webhooks that see every namespace: one test at a time (each test
/// has a runtime of its own; tokio's Mutex serves any of them, and a failed test's guard is
/// simply dropped).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The control plane, started on first use; and this test's turn (held until it ends).
pub async fn plane() -> (&'static ControlPlane, tokio::sync::MutexGuard<'static, ()>) {
    let turn = SERIAL.lock().await;
    let plane = PLANE.get_or_init(|| {
        // The processes are spawned by a thread that lives as long as the test binary: the
        // parent-death signal fires when the spawning *thread* ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(start());
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .unwrap_or_else(|_| Err("the start thread died".into()))
    });
    match plane {
        Ok(p) => (p, turn),
        Err(e) => panic!("{e}"),
    }
}

/// What the apiserver's private /etc/hosts says each install's Service name resolves to: its
/// Endpoints, as far as the apiserver can tell.
static ENDPOINTS: Mutex<Vec<(&'static str, Vec<&'static str>)>> = Mutex::new(Vec::new());

fn write_hosts(path: &Path, endpoints: &[(&str, Vec<&str>)]) -> std::io::Result<()> {
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for (ns, _) in HOMES {
        let addrs = endpoints
            .iter()
            .find(|(n, _)| n == ns)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| HOMES.iter().find(|(n, _)| n == ns).unwrap().1.to_vec());
        for addr in addrs {
            hosts.push_str(&format!("{addr} {SERVICE}.{ns}.svc\n"));
        }
    }
    // In place (the apiserver sees this file through a bind mount of its inode), in one write
    // of a fixed size and never truncated, so that its resolver never reads it empty or cut
    // short (and asks DNS, which here is loopback too: see `start`). Blank lines pad it.
    assert!(hosts.len() < HOSTS_SIZE, "the hosts file outgrew its size");
    let mut bytes = hosts.into_bytes();
    bytes.resize(HOSTS_SIZE, b'\n');
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?
        .write_all_at(&bytes, 0)
}

/// The hosts file's fixed size.
const HOSTS_SIZE: usize = 4096;

impl ControlPlane {
    /// Changes what the Service of the install in `ns` resolves to, as an Endpoints update
    /// does: the apiserver (Go's resolver, which re-reads /etc/hosts at most every 5 s) dials
    /// only `addrs`, in that order, from then on.
    pub fn set_endpoints(&self, ns: &'static str, addrs: &[&'static str]) {
        let mut endpoints = ENDPOINTS.lock().unwrap();
        endpoints.retain(|(n, _)| *n != ns);
        endpoints.push((ns, addrs.to_vec()));
        write_hosts(&self.dir.join("hosts"), &endpoints).unwrap();
    }

    /// A kubeconfig for `who` (one of the token identities).
    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.kubeconfig"))
    }

    /// Writes a kubeconfig for `token` at `path`, its default namespace `namespace` (for a
    /// ServiceAccount's, its own: what an in-cluster client defaults to).
    pub fn write_kubeconfig(&self, path: &Path, token: &str, namespace: &str) {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: suite\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: suite\n  context:\n    cluster: suite\n    user: user\n    namespace: {namespace}\ncurrent-context: suite\n",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }

    /// The bearer token of `who` (one of the token identities): opaque, as a static token is.
    pub fn token(&self, who: &str) -> &str {
        &self.tokens[who]
    }

    /// A client acting as `who`.
    pub async fn client(&self, who: &str) -> kube::Client {
        client_from(&self.kubeconfig(who)).await
    }

    /// The pinned kubectl, as `who`.
    pub fn kubectl(&self, who: &str) -> Command {
        let mut c = crate::common::tool("kubectl");
        c.arg("--kubeconfig").arg(self.kubeconfig(who));
        c
    }

    /// The pinned helm, as the admin.
    pub fn helm(&self) -> Command {
        let mut c = crate::common::tool("helm");
        c.arg("--kubeconfig").arg(self.kubeconfig(ADMIN));
        // Helm's caches and config in the suite's directory, not the user's home.
        for (var, sub) in [
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
        ] {
            c.env(var, self.dir.join(sub));
        }
        c
    }

    /// The release as `1.36`.
    pub fn minor(&self) -> &str {
        let v = self.version.trim_start_matches("Kubernetes v");
        let end = v.match_indices('.').nth(1).map_or(v.len(), |(i, _)| i);
        &v[..end]
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Runs `cmd` to success; its stdout. A failure panics with both streams.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assets() -> Result<PathBuf, String> {
    let dir = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from).ok_or(
        "KUBEBUILDER_ASSETS is not set: the cluster tests need a directory holding kube-apiserver, \
         etcd and kube-controller-manager (envtest's convention; `setup-envtest use 1.36 -p path` \
         prints one). `make test` sets it.",
    )?;
    for tool in ["kube-apiserver", "etcd", "kube-controller-manager"] {
        if !dir.join(tool).is_file() {
            return Err(format!(
                "KUBEBUILDER_ASSETS={}: no {tool} there (envtest's convention: kube-apiserver, \
                 etcd and kube-controller-manager in one directory)",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills what this binary started and removes their directory; runs when the test binary exits
/// (libtest ends with `exit`).
extern "C" fn stop_all() {
    if let Ok(children) = CHILDREN.lock() {
        for &pid in children.iter() {
            // Our own children, by their id.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in children.iter() {
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
    if let Some(dir) = STATE_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Spawns `cmd` with its output in `dir/NAME.log`, killed if this binary dies.
fn spawn(dir: &Path, name: &str, mut cmd: Command) -> Result<std::process::Child, String> {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
    CHILDREN.lock().unwrap().push(child.id() as i32);
    Ok(child)
}

fn tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until `ready` holds, failing early if `child` exits.
fn wait_for(
    dir: &Path,
    name: &str,
    child: &mut std::process::Child,
    within: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            // Reaped: its id may be reused, so the exit hook must not kill it.
            CHILDREN
                .lock()
                .unwrap()
                .retain(|&pid| pid != child.id() as i32);
            return Err(format!("{name} exited ({status}):\n{}", tail(dir, name)));
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{name} not ready in {within:?}:\n{}",
        tail(dir, name)
    ))
}

fn start() -> Result<ControlPlane, String> {
    let assets = assets()?;
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("rancher-remap-cluster-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    STATE_DIR.set(dir.clone()).ok();
    unsafe { libc::atexit(stop_all) };

    let version = run_ok(Command::new(assets.join("kube-apiserver")).arg("--version"))
        .trim()
        .to_string();
    let ca = write_pki(&dir)?;
    let tokens = write_tokens(&dir)?;
    // The names the apiserver alone resolves (see HOMES).
    write_hosts(&dir.join("hosts"), &ENDPOINTS.lock().unwrap()).map_err(|e| e.to_string())?;

    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{etcd_port}");
    let mut etcd = spawn(
        &dir,
        "etcd",
        etcd_command(&assets, &dir, &client_url, peer_port),
    )?;
    let api = apiserver_command(&assets, &dir, &client_url, api_port)?;
    let mut apiserver = spawn(&dir, "kube-apiserver", api)?;

    let url = format!("https://127.0.0.1:{api_port}");
    let plane = ControlPlane {
        dir: dir.clone(),
        url: url.clone(),
        ca,
        version,
        tokens,
    };
    for who in [ADMIN, STORK, SOMEONE] {
        plane.write_kubeconfig(&plane.kubeconfig(who), &plane.tokens[who], "default");
    }
    let ready = || {
        Command::new(crate::common::tools_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(plane.kubeconfig(ADMIN))
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    wait_for(&dir, "etcd", &mut etcd, Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
    })?;
    wait_for(
        &dir,
        "kube-apiserver",
        &mut apiserver,
        Duration::from_secs(90),
        ready,
    )?;
    // Fills aggregated ClusterRoles, deletes Namespaces, makes each Namespace's default
    // ServiceAccount. Controllers that would reach for a cloud, node CIDRs or aggregated
    // metrics through a ClusterIP are off.
    let kcm = controller_manager_command(&assets, &dir, &plane.kubeconfig(ADMIN));
    let kcm = spawn(&dir, "kube-controller-manager", kcm)?;
    std::mem::forget(kcm); // Reaped by stop_all, with the others.
    std::mem::forget(etcd);
    std::mem::forget(apiserver);

    // Stork writes with cluster-admin on the destination.
    run_ok(
        plane
            .kubectl(ADMIN)
            .args(["create", "clusterrolebinding", "stork-is-admin"])
            .args(["--clusterrole=cluster-admin", "--user", STORK]),
    );
    eprintln!(
        "cluster suite: {} ready in {:.1?} at {} ({})",
        plane.version,
        started.elapsed(),
        plane.url,
        dir.display()
    );
    Ok(plane)
}

/// Certificates: one CA for the apiserver's serving pair and client certificates (none are
/// used: every identity has a token), and the ServiceAccount signing key. Returns the CA.
fn write_pki(dir: &Path) -> Result<String, String> {
    let now = time::OffsetDateTime::now_utc();
    let ca = rancher_remap::pki::new_ca("cluster suite", now, now + time::Duration::days(2))
        .map_err(|e| e.to_string())?;
    let serving = rancher_remap::pki::issue_serving(
        &ca,
        &["localhost".to_string(), "127.0.0.1".to_string()],
        now,
        now + time::Duration::days(1),
    )
    .map_err(|e| e.to_string())?;
    let sa = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let files = [
        ("ca.crt", ca.cert.clone()),
        ("apiserver.crt", serving.cert),
        ("apiserver.key", serving.key),
        ("sa.key", sa.serialize_pem()),
        ("sa.pub", sa.public_key_pem()),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }

    Ok(ca.cert)
}

/// Identities by token: the apiserver's token file, and each identity's token.
fn write_tokens(dir: &Path) -> Result<BTreeMap<&'static str, String>, String> {
    let mut tokens = BTreeMap::new();
    let mut csv = String::new();
    for (who, groups) in [
        (ADMIN, "system:masters"),
        (STORK, "stork-migrators"),
        (SOMEONE, "people"),
    ] {
        let token = random_token();
        csv.push_str(&format!("{token},{who},{who},\"{groups}\"\n"));
        tokens.insert(who, token);
    }
    std::fs::write(dir.join("tokens.csv"), csv).map_err(|e| e.to_string())?;
    Ok(tokens)
}

fn etcd_command(assets: &Path, dir: &Path, client_url: &str, peer_port: u16) -> Command {
    let mut etcd = Command::new(assets.join("etcd"));
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    etcd.arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--name", "suite"])
        .args(["--listen-client-urls", client_url])
        .args(["--advertise-client-urls", client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .arg(format!("--initial-cluster=suite={peer_url}"))
        .args(["--unsafe-no-fsync=true", "--log-level=warn"]);
    etcd
}

fn apiserver_command(
    assets: &Path,
    dir: &Path,
    client_url: &str,
    api_port: u16,
) -> Result<Command, String> {
    let path = |f: &str| dir.join(f).display().to_string();
    // The apiserver's own /etc/hosts (HOMES), and a resolv.conf whose only nameserver is on
    // loopback: a name the hosts file does not hold fails here instead of leaving the machine.
    std::fs::write(
        dir.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .map_err(|e| e.to_string())?;
    let mut api = Command::new("unshare");
    api.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            r#"mount --bind "$0" /etc/hosts && { [ ! -e /etc/resolv.conf ] || mount --bind "$1" /etc/resolv.conf; } && shift && exec "$@""#,
        )
        .arg(dir.join("hosts"))
        .arg(dir.join("resolv.conf"))
        .arg(assets.join("kube-apiserver"))
        .args([
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--etcd-servers={client_url}"),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=RBAC".to_string(),
            format!("--client-ca-file={}", path("ca.crt")),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_string(),
            "--api-audiences=https://kubernetes.default.svc".to_string(),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--cert-dir={}", path("pki")),
            "--enable-priority-and-fairness=false".to_string(),
            "--profiling=false".to_string(),
            "--enable-aggregator-routing=true".to_string(),
        ]);
    Ok(api)
}

fn controller_manager_command(assets: &Path, dir: &Path, admin: &Path) -> Command {
    let path = |f: &str| dir.join(f).display().to_string();
    let mut kcm = Command::new(assets.join("kube-controller-manager"));
    let admin = admin.display().to_string();
    kcm.args([
        format!("--kubeconfig={admin}"),
        format!("--authentication-kubeconfig={admin}"),
        format!("--authorization-kubeconfig={admin}"),
        "--bind-address=127.0.0.1".to_string(),
        "--secure-port=0".to_string(),
        "--controllers=*,-node-ipam-controller,-service-lb-controller,-node-route-controller,-cloud-node-lifecycle-controller,-horizontal-pod-autoscaler-controller".to_string(),
        format!("--service-account-private-key-file={}", path("sa.key")),
        format!("--root-ca-file={}", path("ca.crt")),
        "--use-service-account-credentials=false".to_string(),
        "--leader-elect=false".to_string(),
        "--allocate-node-cidrs=false".to_string(),
        "--configure-cloud-routes=false".to_string(),
        "--profiling=false".to_string(),
        format!("--flex-volume-plugin-dir={}", path("flex")),
        format!("--client-ca-file={}", path("ca.crt")),
        "--authentication-skip-lookup=true".to_string(),
    ]);
    kcm
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
