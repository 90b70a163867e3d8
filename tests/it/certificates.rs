//! Certificates the server keeps itself (`serve --cert-secret`, the chart's default), from the
//! outside: the real binary with the chart's environment, under the chart's RBAC in the fake
//! API server, and clients that trust only what the webhook configurations' caBundle says, read
//! from the fake at every handshake, as kube-apiserver does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use crate::common::*;
use std::path::Path;

use crate::deploy::{chart_server_env, helm_template_at, Certs};
use crate::fake_api::FakeApi;
use rancher_remap::pki::{self, PemPair};

use crate::common::serve_command_without_certificates;

const NS: &str = "rancher-remap";
const SECRET: &str = "rancher-remap-certs";
const HOST: &str = "rancher-remap.rancher-remap.svc";

/// Six-second serving certificates (renewed when two seconds are left) from an hour-long CA.
const SHORT_LIVED: [(&str, &str); 3] = [
    ("RANCHER_REMAP_CERT_VALIDITY", "6s"),
    ("RANCHER_REMAP_CA_VALIDITY", "1h"),
    ("RANCHER_REMAP_CA_ROLLOVER_GRACE", "1s"),
];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap(),
    )
    .unwrap()
}

/// The chart's destination install in the fake: its webhook configurations, as the chart
/// renders them (no caBundle). (Its RBAC is the real apiserver's to judge: `cluster_suite`.)
fn install(fake: &FakeApi) -> Vec<Value> {
    let docs = chart_docs(&repo("charts/rancher-remap"));
    install_docs(fake, &docs);
    docs
}

/// `docs`' webhook configurations in the fake.
fn install_docs(fake: &FakeApi, docs: &[Value]) {
    fake.put_all(
        docs.iter()
            .filter(|d| {
                d["kind"]
                    .as_str()
                    .unwrap()
                    .ends_with("WebhookConfiguration")
            })
            .cloned(),
    );
}

const WEBHOOK_CONFIGURATIONS: [&str; 2] = [
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
];

/// The server may not patch its webhook configurations (as without the chart's rule for it):
/// 403 until permitted.
fn forbid_ca_bundle_patches(fake: &FakeApi) {
    for plural in WEBHOOK_CONFIGURATIONS {
        fake.forbid("patch", plural);
    }
}

/// The chart at `chart` rendered in the destination role (its RBAC and everything else).
pub fn chart_docs(chart: &Path) -> Vec<Value> {
    helm_template_at(chart, "destination", Certs::ServerMade, &[]).unwrap()
}

/// The chart's settings for certificates the server keeps.
const MANAGED_CERT_ENV: [&str; 5] = [
    "RANCHER_REMAP_CERT_SECRET",
    "RANCHER_REMAP_SERVICE",
    "RANCHER_REMAP_WEBHOOK_CONFIGURATIONS",
    "RANCHER_REMAP_CERT_VALIDITY",
    "RANCHER_REMAP_CA_VALIDITY",
];

/// The real server with `env` against `fake`. With `own_certificates` (the chart's default), it
/// keeps its certificates in the fake's Secret and the caBundle of `install`'s webhook
/// configurations, which are put in the fake; without, it reads certificate files.
pub async fn serve_with(
    fake: &FakeApi,
    env: Vec<(String, String)>,
    install: &[Value],
    own_certificates: bool,
) -> (ServeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let mut all: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| own_certificates || !MANAGED_CERT_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("KUBECONFIG", kubeconfig.to_str().unwrap()));
    if !own_certificates {
        return (ServeProcess::start(&[], &all).await, dir);
    }
    let secret = env
        .iter()
        .find(|(k, _)| k == "RANCHER_REMAP_CERT_SECRET")
        .map(|(_, v)| v.split_once('/').unwrap())
        .expect("the chart's default: certificates the server keeps");
    fake.put_all(
        install
            .iter()
            .filter(|d| {
                d["kind"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("WebhookConfiguration"))
            })
            .cloned(),
    );
    let host = "rancher-remap.rancher-remap.svc";
    let s = ServeProcess::start_with_cert_secret(&[], &all, fake, secret, host).await;
    (s, dir)
}

/// A replica: the real binary with the chart's environment, `over` replacing some of it, as the
/// chart's ServiceAccount; no mapping table (validate-only keeps the test about certificates).
fn replica_command(
    fake: &FakeApi,
    dir: &std::path::Path,
    over: &[(&str, &str)],
) -> std::process::Command {
    let mut env = chart_server_env(&["--set", "clusterId=c-m-dst01"]);
    env.retain(|(k, _)| k != "RANCHER_REMAP_MAPPINGS_CONFIGMAP");
    env.push(("RANCHER_REMAP_VALIDATE_ONLY".into(), "true".into()));
    for (k, v) in over {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    }
    let mut cmd = serve_command_without_certificates(env!("CARGO_BIN_EXE_rancher-remap"));
    cmd.envs(env).env("KUBECONFIG", fake.kubeconfig(dir));
    cmd
}

async fn replica(fake: &FakeApi, over: &[(&str, &str)]) -> (ServeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cmd = replica_command(fake, dir.path(), over);
    (ServeProcess::spawn_command(cmd).await, dir)
}

/// The caBundle (PEM) of a webhook configuration in the fake, as the API server would use it.
fn ca_bundle_of(fake: &FakeApi, kind: &str, name: &str) -> String {
    let c = fake
        .get(
            &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": name}}),
        )
        .unwrap();
    unb64(&c["webhooks"][0]["clientConfig"]["caBundle"])
}

fn mutating_bundle(fake: &FakeApi) -> String {
    ca_bundle_of(fake, "MutatingWebhookConfiguration", "rancher-remap")
}

fn secret(fake: &FakeApi) -> Option<Value> {
    fake.get(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": NS, "name": SECRET}}))
}

/// A TLS handshake to `addr` as kube-apiserver makes it: trusting only `bundle`, checking the
/// Service's DNS name. The leaf certificate presented, or why the handshake failed.
async fn handshake(addr: std::net::SocketAddr, bundle: &str) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(rancher_remap::crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok(leaf)
}

fn pem_of(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64_bytes(der)
    )
}

fn b64_bytes(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_started_at_once_share_one_pair_and_publish_its_ca() {
    let fake = FakeApi::start().await;
    install(&fake);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = tokio::join!(
        ServeProcess::spawn_command(replica_command(&fake, dir_a.path(), &[])),
        ServeProcess::spawn_command(replica_command(&fake, dir_b.path(), &[])),
    );
    let stored = secret(&fake).expect("the Secret");
    assert_eq!(stored["type"], "kubernetes.io/tls");
    let bundle = unb64(&stored["data"]["ca-bundle.crt"]);
    let serving = pem_der(&unb64(&stored["data"]["tls.crt"]));
    // Both serve the stored pair, which every webhook configuration trusts.
    for s in [&a, &b] {
        assert_eq!(handshake(s.webhook, &bundle).await.unwrap(), serving);
    }
    eventually(
        "every caBundle published",
        Duration::from_secs(15),
        async || {
            [
                ("MutatingWebhookConfiguration", "rancher-remap"),
                ("ValidatingWebhookConfiguration", "rancher-remap-mappings"),
                (
                    "ValidatingWebhookConfiguration",
                    "rancher-remap-clusterpairs",
                ),
            ]
            .iter()
            .all(|(kind, name)| ca_bundle_of(&fake, kind, name) == bundle)
        },
    )
    .await;
    // One of them wrote it; the other read it (after a 409, or by getting there second).
    let writes = |text: &str| {
        metric(
            text,
            "rancher_remap_certificate_secret_writes_total{result=\"ok\"}",
        )
        .unwrap()
    };
    assert_eq!(writes(&a.metrics().await) + writes(&b.metrics().await), 1.0);
    for s in [&a, &b] {
        assert_eq!(
            metric(&s.metrics().await, "rancher_remap_ca_bundle_stale"),
            Some(0.0)
        );
    }
    // No key in any log line.
    let key = unb64(&stored["data"]["ca.key"]);
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for s in [&a, &b] {
        let log = s.log.lock().unwrap().clone();
        assert!(
            !log.contains("PRIVATE KEY") && !log.contains(&body[..40]),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_pairs_are_renewed_before_they_expire_and_every_replica_follows() {
    let fake = FakeApi::start().await;
    install(&fake);
    let (a, _da) = replica(&fake, &SHORT_LIVED).await;
    let (b, _db) = replica(&fake, &SHORT_LIVED).await;
    let bundle = mutating_bundle_when_published(&fake).await;
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} pairs seen",
            seen.len()
        );
        for s in [&a, &b] {
            let leaf = handshake(s.webhook, &mutating_bundle(&fake))
                .await
                .unwrap_or_else(|e| panic!("a handshake failed during renewals: {e}"));
            seen.insert(leaf);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The CA did not change, so neither did any caBundle.
    assert_eq!(mutating_bundle(&fake), bundle);
    // Both replicas end on the stored pair.
    eventually(
        "both serve the stored pair",
        Duration::from_secs(10),
        async || {
            let stored = pem_der(&unb64(&secret(&fake).unwrap()["data"]["tls.crt"]));
            let (x, y) = (
                handshake(a.webhook, &bundle).await,
                handshake(b.webhook, &bundle).await,
            );
            x.as_ref() == Ok(&stored) && y.as_ref() == Ok(&stored)
        },
    )
    .await;
}

async fn mutating_bundle_when_published(fake: &FakeApi) -> String {
    let mut bundle = String::new();
    eventually(
        "the caBundle published",
        Duration::from_secs(15),
        async || {
            bundle = mutating_bundle(fake);
            !bundle.is_empty()
        },
    )
    .await;
    bundle
}

fn put_secret(ca: &PemPair, serving: &PemPair) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"namespace": NS, "name": SECRET},
        "data": {"ca.crt": b64(&ca.cert), "ca.key": b64(&ca.key), "ca-bundle.crt": b64(&ca.cert),
                 "tls.crt": b64(&serving.cert), "tls.key": b64(&serving.key)}})
}

/// A CA that ends in `seconds`, with its serving pair, in the certificate Secret, and trusted
/// by every webhook configuration of `docs` (published earlier).
fn publish_expiring_ca(fake: &FakeApi, docs: Vec<Value>, seconds: i64) -> PemPair {
    let now = time::OffsetDateTime::now_utc();
    let end = now + time::Duration::seconds(seconds);
    let ca = pki::new_ca(NS, now, end).unwrap();
    let names = pki::service_dns_names("rancher-remap", NS);
    let serving = pki::issue_serving(&ca, &names, now, end).unwrap();
    fake.put(put_secret(&ca, &serving));
    let configurations = docs.into_iter().filter(|d| {
        d["kind"]
            .as_str()
            .unwrap()
            .ends_with("WebhookConfiguration")
    });
    for mut d in configurations {
        for w in d["webhooks"].as_array_mut().unwrap() {
            w["clientConfig"]["caBundle"] = json!(b64(&ca.cert));
        }
        fake.put(d);
    }
    ca
}

/// The mutating webhook's caBundle as stored, with when it was seen.
type Seen = Arc<std::sync::Mutex<std::collections::VecDeque<(tokio::time::Instant, String)>>>;

/// What API servers have seen, sampled every 10 ms (a task of its own, so that slow
/// handshakes do not thin it out). 2.2 s into the 3 s grace (between two of the server's
/// checks, a second apart), a stale writer (another replica that read the Secret before
/// step 1) puts the old bundle back in the mutating webhook (and says so in the flag): the
/// server puts its own back at its next check, and the grace starts again from there. Were it
/// not, the new CA's pair would be served while API servers still hold the old bundle.
fn sample_mutating_bundle(
    fake: &FakeApi,
    old: &str,
) -> (Seen, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    seen.lock()
        .unwrap()
        .push_back((tokio::time::Instant::now(), old.to_string()));
    let reset = Arc::new(AtomicBool::new(false));
    let (fake, samples, reset_done, old) =
        (fake.clone(), seen.clone(), reset.clone(), old.to_string());
    let sampler = tokio::spawn(async move {
        let mut published_at = None;
        loop {
            let stored = mutating_bundle(&fake);
            if CertificateDer::pem_slice_iter(stored.as_bytes()).count() == 2 {
                let at = *published_at.get_or_insert_with(tokio::time::Instant::now);
                if !reset_done.load(Ordering::SeqCst) && at.elapsed() >= Duration::from_millis(2200)
                {
                    reset_mutating_bundle(&fake, &old);
                    reset_done.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            samples
                .lock()
                .unwrap()
                .push_back((tokio::time::Instant::now(), stored));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (seen, reset, sampler)
}

/// The bundle an API server whose informer lags `lag` behind holds now.
fn lagging(seen: &Seen, lag: Duration) -> String {
    let mut h = seen.lock().unwrap();
    while h.len() > 1 && h[1].0.elapsed() >= lag {
        h.pop_front();
    }
    h[0].1.clone()
}

/// A CA rollover that finishes within seconds.
const QUICK_ROLLOVER: [(&str, &str); 4] = [
    ("RANCHER_REMAP_CERT_VALIDITY", "60s"),
    ("RANCHER_REMAP_CA_VALIDITY", "1h"),
    ("RANCHER_REMAP_CA_ROLLOVER_GRACE", "3s"),
    ("RANCHER_REMAP_CERT_RESYNC", "1s"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rollover_changes_the_ca_bundle_without_a_failed_handshake() {
    let fake = FakeApi::start().await;
    // At first the server may not patch its webhook configurations (the new CA cannot be
    // published), for longer than the grace.
    let docs = install(&fake);
    forbid_ca_bundle_patches(&fake);
    let old_ca = publish_expiring_ca(&fake, docs, 20);
    let (s, _dir) = replica(&fake, &QUICK_ROLLOVER).await;
    // Handshakes as an API server makes them: with the caBundle its informer has, which lags
    // the stored one (here by a second, under the 3 s grace), until the old CA has left it.
    const LAG: Duration = Duration::from_secs(1);
    let old = pki::CertInfo::parse(&old_ca.cert, "CA").unwrap();
    let (mut handshakes, mut widest) = (0, 0);
    // While the new CA cannot be published, the pair in force stays the old CA's.
    let blocked_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < blocked_until {
        let leaf = handshake(s.webhook, &old_ca.cert)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed while unpublished: {e}"));
        let leaf = pki::CertInfo::parse(&pem_of(&leaf), "leaf").unwrap();
        assert!(
            leaf.issued_by(&old),
            "a pair of the new CA before it was published"
        );
        handshakes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&s.metrics().await, "rancher_remap_ca_bundle_stale"),
        Some(3.0)
    );
    // The permission given: the new CA is published, and the grace counts from there.
    for plural in WEBHOOK_CONFIGURATIONS {
        fake.permit("patch", plural);
    }
    // What API servers have seen, sampled every 10 ms (a task of its own, so that slow
    // handshakes do not thin it out). 2.2 s into the 3 s grace (between two of the server's
    // checks, a second apart), a stale writer (another replica that read the Secret before
    // step 1) puts the old bundle back in the mutating webhook: the server puts its own back at
    // its next check, and the grace starts again from there. Were it not, the new CA's pair
    // would be served while API servers still hold the old bundle.
    let (seen, reset, sampler) = sample_mutating_bundle(&fake, &old_ca.cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let new_ca = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollover did not finish: {}",
            s.log.lock().unwrap()
        );
        let known = lagging(&seen, LAG);
        let certs: Vec<_> = CertificateDer::pem_slice_iter(known.as_bytes()).collect();
        widest = widest.max(certs.len());
        handshake(s.webhook, &known)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during the rollover: {e}"));
        handshakes += 1;
        if certs.len() == 1 && known != old_ca.cert {
            break known;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sampler.abort();
    assert_eq!(widest, 2, "both CAs were trusted during the rollover");
    let stored = secret(&fake).unwrap();
    assert_eq!(unb64(&stored["data"]["ca.crt"]), new_ca);
    // The pair in force is the new CA's.
    let leaf = handshake(s.webhook, &new_ca).await.unwrap();
    assert_eq!(leaf, pem_der(&unb64(&stored["data"]["tls.crt"])));
    assert!(handshakes > 20, "{handshakes} handshakes");
    assert!(
        reset.load(Ordering::SeqCst),
        "the stale write happened during the grace"
    );
}

/// Puts `bundle_pem` in the mutating webhook's caBundle, as a stale writer would.
fn reset_mutating_bundle(fake: &FakeApi, bundle_pem: &str) {
    let mut hook = fake
        .get(&json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": "rancher-remap"}}))
        .unwrap();
    hook["webhooks"][0]["clientConfig"]["caBundle"] = json!(b64(bundle_pem));
    fake.put(hook);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_patch_keeps_serving_and_reports_it() {
    let fake = FakeApi::start().await;
    install(&fake);
    forbid_ca_bundle_patches(&fake);
    let (s, _dir) = replica(&fake, &[]).await;
    // It serves its pair...
    let bundle = unb64(&secret(&fake).unwrap()["data"]["ca-bundle.crt"]);
    handshake(s.webhook, &bundle).await.unwrap();
    // ...and says, in its metrics and its log, that the API servers do not trust it yet.
    let metrics = s.metrics().await;
    assert_eq!(
        metric(&metrics, "rancher_remap_ca_bundle_stale"),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "rancher_remap_ca_bundle_patches_total{result=\"failed\"}"
        )
        .unwrap()
            >= 3.0
    );
    let log = s.log.lock().unwrap().clone();
    assert!(
        log.contains("cannot bring the caBundle up to date")
            && log.contains("mutatingwebhookconfiguration rancher-remap")
            && log.contains("forbidden"),
        "{log}"
    );
    assert!(mutating_bundle(&fake).is_empty());
    // The alert that fires on it is in the chart (promtool runs it in monitoring::).
    let rules =
        std::fs::read_to_string(repo("charts/rancher-remap/files/rancher-remap.rules.yaml"))
            .unwrap();
    assert!(rules.contains("rancher_remap_ca_bundle_stale"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ca_bundle_is_put_back_and_a_deleted_secret_keeps_its_ca() {
    let fake = FakeApi::start().await;
    install(&fake);
    let (_s, _dir) = replica(&fake, &[("RANCHER_REMAP_CERT_RESYNC", "1s")]).await;
    let bundle = mutating_bundle_when_published(&fake).await;
    // An upgrade (or a person) empties a caBundle: the next pass puts it back.
    let mut hook = fake
        .get(&json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": "rancher-remap"}}))
        .unwrap();
    hook["webhooks"][0]["clientConfig"]
        .as_object_mut()
        .unwrap()
        .remove("caBundle");
    fake.put(hook);
    eventually(
        "the caBundle put back",
        Duration::from_secs(15),
        async || mutating_bundle(&fake) == bundle,
    )
    .await;
    // The Secret deleted: made again from the material in force, so the CA stays.
    let before = secret(&fake).unwrap();
    fake.delete(&before);
    eventually(
        "the Secret made again",
        Duration::from_secs(15),
        async || secret(&fake).is_some_and(|s| s["data"]["ca.crt"] == before["data"]["ca.crt"]),
    )
    .await;
    assert_eq!(mutating_bundle(&fake), bundle);
    // Mangled by hand: written back from the material in force too.
    let mut mangled = secret(&fake).unwrap();
    mangled["data"]["ca.key"] = json!(b64("not a key"));
    fake.put(mangled);
    eventually(
        "the Secret written back",
        Duration::from_secs(15),
        async || secret(&fake).is_some_and(|s| s["data"] == before["data"]),
    )
    .await;
    assert_eq!(mutating_bundle(&fake), bundle);
}

/// deploy/OVERLAY with deploy/components/server-made-certs in place of cert-manager, as the
/// operators' guide says to switch, in namespace `ns` (the destination with cluster ID
/// c-m-dst01).
pub fn kustomize_server_made(overlay: &str, ns: &str) -> Vec<Value> {
    let tree = tempfile::tempdir().unwrap();
    crate::deploy::copy_tree(&repo("deploy"), &tree.path().join("deploy"));
    let k = tree
        .path()
        .join(format!("deploy/{overlay}/kustomization.yaml"));
    let text = std::fs::read_to_string(&k).unwrap();
    assert!(text.contains("  - ../components/cert-manager\n"));
    let text = text
        .replace(
            "  - ../components/cert-manager\n",
            "  - ../components/server-made-certs\n",
        )
        .replace(
            "\nnamespace: rancher-remap\n",
            &format!("\nnamespace: {ns}\n"),
        );
    std::fs::write(&k, text).unwrap();
    let id = tree.path().join("deploy/destination/cluster-id.yaml");
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(text.contains("clusterId: \"\""));
    std::fs::write(&id, text.replace("clusterId: \"\"", "clusterId: c-m-dst01")).unwrap();
    crate::deploy::kustomize(&tree.path().join(format!("deploy/{overlay}")))
}

/// The server container's environment (values given inline) in a pod that mounts nothing and
/// has its ServiceAccount token.
fn server_env(docs: &[Value]) -> Vec<(String, String)> {
    let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert!(pod
        .get("volumes")
        .is_none_or(|v| v.as_array().unwrap().is_empty()));
    pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The webhook configurations rendered, as `--webhook-configuration` names them.
fn webhook_configurations(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter_map(|d| match d["kind"].as_str()? {
            "MutatingWebhookConfiguration" => {
                Some(format!("mutating/{}", d["metadata"]["name"].as_str()?))
            }
            "ValidatingWebhookConfiguration" => {
                Some(format!("validating/{}", d["metadata"]["name"].as_str()?))
            }
            _ => None,
        })
        .collect()
}

/// A kubeconfig for `fake` whose context's namespace is `ns` (a pod's).
fn kubeconfig_in(fake: &FakeApi, dir: &Path, ns: &str) -> std::path::PathBuf {
    let kubeconfig = fake.kubeconfig(dir);
    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    std::fs::write(
        &kubeconfig,
        config.replace(
            "    cluster: fake\n",
            &format!("    cluster: fake\n    namespace: {ns}\n"),
        ),
    )
    .unwrap();
    kubeconfig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_component_keeps_certificates_as_the_chart_does() {
    for overlay in ["destination", "source"] {
        let docs = kustomize_server_made(overlay, NS);
        let text = serde_json::to_string(&docs).unwrap();
        assert!(
            !text.contains("cert-manager.io"),
            "{overlay}: cert-manager left over"
        );
        assert!(
            !text.contains("caBundle"),
            "{overlay}: the server fills the caBundle"
        );
        let env = server_env(&docs);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RANCHER_REMAP_CERT_SECRET"), Some(SECRET));
        assert_eq!(get("RANCHER_REMAP_TLS_CERT"), None);
        // The server keeps exactly the install's webhook configurations.
        let mut rendered = webhook_configurations(&docs);
        let mut told: Vec<String> = get("RANCHER_REMAP_WEBHOOK_CONFIGURATIONS")
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        rendered.sort();
        told.sort();
        assert_eq!(told, rendered, "{overlay}");

        // The real server, with this environment, under this RBAC, in its namespace (a Secret
        // named alone is in the client's namespace: in a pod, the pod's).
        let fake = FakeApi::start().await;
        install_docs(&fake, &docs);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig_in(&fake, dir.path(), NS);
        let mut cmd = serve_command_without_certificates(env!("CARGO_BIN_EXE_rancher-remap"));
        cmd.envs(
            env.iter()
                .filter(|(k, _)| k != "RANCHER_REMAP_MAPPINGS_CONFIGMAP")
                .cloned(),
        )
        .env("RANCHER_REMAP_VALIDATE_ONLY", "true")
        .env("KUBECONFIG", &kubeconfig);
        let s = ServeProcess::spawn_command(cmd).await;
        let bundle = unb64(&secret(&fake).expect("the Secret")["data"]["ca-bundle.crt"]);
        handshake(s.webhook, &bundle).await.unwrap();
        eventually(
            "every caBundle published",
            Duration::from_secs(15),
            async || {
                told.iter().all(|r| {
                    let (kind, name) = r.split_once('/').unwrap();
                    let kind = if kind == "mutating" {
                        "MutatingWebhookConfiguration"
                    } else {
                        "ValidatingWebhookConfiguration"
                    };
                    ca_bundle_of(&fake, kind, name) == bundle
                })
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_never_overwrites_a_pair_another_replica_wrote_first() {
    let fake = FakeApi::start().await;
    install(&fake);
    let (s, _dir) = replica(&fake, &SHORT_LIVED).await;
    let stored = secret(&fake).unwrap();
    let bundle = unb64(&stored["data"]["ca-bundle.crt"]);
    // Another replica's pair from the same CA, valid a minute, written just before this
    // replica's renewal (when two seconds are left) reaches the API server.
    let ca = PemPair {
        cert: unb64(&stored["data"]["ca.crt"]),
        key: unb64(&stored["data"]["ca.key"]),
    };
    let now = time::OffsetDateTime::now_utc();
    let names = pki::service_dns_names("rancher-remap", NS);
    let theirs = pki::issue_serving(&ca, &names, now, now + time::Duration::minutes(1)).unwrap();
    let (cert, key) = (b64(&theirs.cert), b64(&theirs.key));
    fake.before_patch(&stored, move |secret| {
        secret["data"]["tls.crt"] = json!(cert);
        secret["data"]["tls.key"] = json!(key);
    });
    // The renewal meets a changed resourceVersion: 409. The replica reads the other write and
    // serves it; nothing is overwritten.
    eventually(
        "the other replica's pair served",
        Duration::from_secs(20),
        async || handshake(s.webhook, &bundle).await.ok() == Some(pem_der(&theirs.cert)),
    )
    .await;
    assert_eq!(
        unb64(&secret(&fake).unwrap()["data"]["tls.crt"]),
        theirs.cert
    );
    let conflicts = metric(
        &s.metrics().await,
        "rancher_remap_certificate_secret_writes_total{result=\"conflict\"}",
    );
    assert_eq!(conflicts, Some(1.0));
}
