//! docs/behaviour.md checks on a ClusterPair's `spec.config` (client-go's internal kubeconfig shape).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::Report;
use crate::clusterpair::{AuthInfo, Cluster, KubeConfig, Secret};
use crate::text::shown_name;

/// `spec.options` keys Stork and Portworx are known to read.
pub const KNOWN_OPTIONS: &[&str] = &[
    "ip",
    "port",
    "token",
    "mode",
    "backuplocation",
    "encryption",
    "bucket",
    "platform",
];

const DAY: i64 = 86_400;

/// Checks the kubeconfig, appending to `report`.
pub fn check(config: &KubeConfig, now: i64, report: &mut Report) {
    let current = "spec.config.current-context";
    if config.current_context.is_empty() {
        report.error(current, "missing: the ClusterPair needs a current context");
        return;
    }
    let (contexts, name) = (&config.contexts, &config.current_context);
    let Some((ctx_path, ctx)) = named(contexts, "context", name, current.into(), report) else {
        return;
    };
    let field = format!("{ctx_path}.cluster");
    if let Some((path, cluster)) = named(&config.clusters, "cluster", &ctx.cluster, field, report) {
        check_cluster(&path, cluster, now, report);
    }
    let field = format!("{ctx_path}.user");
    if let Some((path, user)) = named(&config.users, "user", &ctx.user, field, report) {
        check_user(&path, user, now, report);
    }
}

/// The `what` called `name`, with its path; when there is none, an error at `field` (the field
/// that names it).
fn named<'c, T>(
    entries: &'c BTreeMap<String, T>,
    what: &str,
    name: &str,
    field: String,
    report: &mut Report,
) -> Option<(String, &'c T)> {
    let shown = shown_name(name);
    match entries.get(name) {
        Some(entry) => Some((format!("spec.config.{what}s[{shown}]"), entry)),
        None => {
            let message = format!("names {what} {shown:?}, which is not in {what}s");
            report.error(field, message);
            None
        }
    }
}

fn check_cluster(path: &str, c: &Cluster, now: i64, report: &mut Report) {
    check_server(&format!("{path}.server"), &c.server, report);
    if c.certificate_authority
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        report.error(format!("{path}.certificate-authority"), "a file path: the ClusterPair is used on another cluster, where this path means nothing; embed the CA as certificate-authority-data");
    }
    let ca = Secret::given(&c.certificate_authority_data);
    if c.insecure_skip_tls_verify {
        if ca.is_some() {
            report.error(format!("{path}.insecure-skip-tls-verify"), "true together with certificate-authority-data: client-go refuses this pair; remove one");
        } else {
            report.warning(
                format!("{path}.insecure-skip-tls-verify"),
                "true: the destination API server's certificate is not verified",
            );
        }
    }
    if let Some(ca) = ca {
        let ca_path = format!("{path}.certificate-authority-data");
        check_certificates(&ca_path, ca, now, report);
    }
}

fn check_server(path: &str, server: &str, report: &mut Report) {
    if server.is_empty() {
        report.error(path, "missing: the destination API server URL");
        return;
    }
    // The URL is not quoted: it may carry user info (`https://user:password@host`).
    let url = match url::Url::parse(server) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            report.error(path, "not an absolute URL (expected https://host[:port])");
            return;
        }
        Err(e) => {
            // url's messages name the problem, never the input ("invalid port number").
            report.error(path, format!("not a valid URL: {e}"));
            return;
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        report.error(path, "the URL has no host (expected https://host[:port])");
        return;
    }
    match url.scheme() {
        "https" => {}
        "http" => report.warning(
            path,
            "the URL uses plain http: credentials travel unencrypted",
        ),
        _ => report.error(path, "the URL's scheme is not https"),
    }
}

fn check_user(path: &str, u: &AuthInfo, now: i64, report: &mut Report) {
    for (field, value) in [
        ("client-certificate", &u.client_certificate),
        ("client-key", &u.client_key),
        ("tokenFile", &u.token_file),
    ] {
        if value.as_deref().is_some_and(|p| !p.is_empty()) {
            report.error(format!("{path}.{field}"), "a file path: the ClusterPair is used on another cluster, where this path means nothing; embed the credential as data");
        }
    }
    let (cert, key) = (
        Secret::given(&u.client_certificate_data),
        Secret::given(&u.client_key_data),
    );
    match (cert, key) {
        (Some(_), None) => report.error(
            format!("{path}.client-key-data"),
            "missing: client-certificate-data is given without its key",
        ),
        (None, Some(_)) => report.error(
            format!("{path}.client-certificate-data"),
            "missing: client-key-data is given without its certificate",
        ),
        (Some(cert), Some(key)) => check_client_pair(path, cert, key, now, report),
        (None, None) => {}
    }
    let any = cert.is_some()
        || key.is_some()
        || Secret::given(&u.token).is_some()
        || u.exec
        || u.auth_provider
        || (u.username.is_some() && Secret::given(&u.password).is_some())
        || u.token_file.is_some()
        || u.client_certificate.is_some();
    if !any {
        report.error(
            path,
            "no credential: give a token, a client certificate and key, exec or auth-provider",
        );
    }
}

fn decode_b64(s: &Secret) -> Option<Vec<u8>> {
    let compact: String = s.expose().chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(compact).ok()
}

/// Base64 of PEM X.509, each certificate unexpired (warning within 30 days). Gives the first
/// certificate's public key (its SubjectPublicKeyInfo, DER).
fn check_certificates(path: &str, data: &Secret, now: i64, report: &mut Report) -> Option<Vec<u8>> {
    let Some(bytes) = decode_b64(data) else {
        report.error(path, "not base64");
        return None;
    };
    let mut found = 0;
    let mut first_key = None;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let Ok(cert) = pem.parse_x509() else {
            report.error(path, "holds a CERTIFICATE block that is not valid X.509");
            return None;
        };
        found += 1;
        let until = cert.validity().not_after;
        if until.timestamp() < now {
            report.error(path, format!("certificate #{found} expired at {until}"));
        } else if until.timestamp() - now < 30 * DAY {
            let message = format!("certificate #{found} expires within 30 days, at {until}");
            report.warning(path, message);
        }
        first_key.get_or_insert_with(|| cert.public_key().raw.to_vec());
    }
    if found == 0 {
        report.error(path, "is base64, but not of a PEM X.509 certificate");
    }
    first_key
}

fn check_client_pair(path: &str, cert: &Secret, key: &Secret, now: i64, report: &mut Report) {
    let cert_path = format!("{path}.client-certificate-data");
    let cert_key = check_certificates(&cert_path, cert, now, report);
    let key_path = format!("{path}.client-key-data");
    let Some(key_bytes) = decode_b64(key) else {
        report.error(key_path, "not base64");
        return;
    };
    let Some(public_key) = key_spki(&key_bytes) else {
        report.error(
            key_path,
            "is base64, but not of a PEM private key (PKCS#8, PKCS#1 RSA, SEC1 EC, or Ed25519)",
        );
        return;
    };
    if cert_key.is_some_and(|cert_key| cert_key != public_key) {
        report.error(
            key_path,
            "does not match client-certificate-data (a different key pair)",
        );
    }
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key, through the one crypto provider (ring).
fn key_spki(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).ok()?;
    let key = rustls::crypto::ring::sign::any_supported_type(&der).ok()?;
    key.public_key().map(|spki| spki.as_ref().to_vec())
}
