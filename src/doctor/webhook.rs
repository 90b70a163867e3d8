//! The `webhook` check: the installed wiring, judged from what was read.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use rustls::client::{danger::ServerCertVerifier, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::Check;

/// The chart's default `webhook.timeoutSeconds`.
pub const SHIPPED_TIMEOUT_SECONDS: i32 = 5;
/// A serving certificate closer than this to its end is a warning: renew it.
const RENEW_WITHIN_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug)]
pub struct WebhookFacts {
    /// The MutatingWebhookConfiguration's name and its rewrite webhook, when one points at
    /// this install.
    pub configuration: Option<(String, MutatingWebhook)>,
    /// The Service DNS name the API server calls (`svc.ns.svc`).
    pub service_dns: String,
    /// The serving certificate, as far as it could be read.
    pub serving_cert: ServingCert,
    /// `None`: no Deployment.
    pub ready_replicas: Option<i32>,
    /// Unix seconds, now.
    pub now: i64,
}

/// Where the serving certificate was found.
#[derive(Clone, Debug)]
pub enum ServingCert {
    /// Its PEM, from the Secret the Deployment mounts or the server's own Secret.
    Pem(Vec<u8>),
    /// The server keeps its own certificates (`--cert-secret`) in this Secret (`NS/NAME`), which
    /// this identity may not read (the helm test's account, by design: the Secret holds the CA
    /// key).
    ServerKept(String),
    /// Why it could not be found.
    Missing(String),
}

/// Whether the PEM certificate `cert` chains to the PEM CAs in `ca` and is valid for `dns` at
/// `now`, as kube-apiserver checks a webhook's certificate against its caBundle. The
/// certificate's notAfter (Unix seconds) when it does.
fn serving_cert_verifies(ca: &[u8], cert: &[u8], dns: &str, now: i64) -> Result<i64, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        let c = c.map_err(|_| "the caBundle is not PEM certificates".to_string())?;
        roots.add(c).map_err(|e| format!("the caBundle: {e}"))?;
    }
    let builder =
        WebPkiServerVerifier::builder_with_provider(roots.into(), crate::crypto::provider());
    let verifier = builder.build().map_err(|e| format!("the caBundle: {e}"))?;
    let der = CertificateDer::from_pem_slice(cert)
        .map_err(|_| "the serving certificate is not PEM".to_string())?;
    let name = ServerName::try_from(dns.to_string()).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    verifier
        .verify_server_cert(&der, &[], &name, &[], at)
        .map_err(|e| e.to_string())?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| "the serving certificate does not parse".to_string())?;
    Ok(parsed.validity().not_after.timestamp())
}

/// Whether the caBundle holds at least one CA valid at `now`.
fn ca_bundle_usable(ca: &[u8], now: i64) -> Result<(), String> {
    let valid_ca = |der: CertificateDer| {
        x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, c)| {
            let v = c.validity();
            c.is_ca() && v.not_before.timestamp() <= now && now < v.not_after.timestamp()
        })
    };
    let any = CertificateDer::pem_slice_iter(ca)
        .filter_map(Result::ok)
        .any(valid_ca);
    any.then_some(())
        .ok_or("the caBundle holds no CA valid now: the API server cannot trust the server".into())
}

/// The findings of the webhook check, worst first decides its status.
pub fn check_webhook(w: &WebhookFacts, cluster_id: Option<&str>) -> Check {
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    match &w.configuration {
        None => fails.push(
            "no MutatingWebhookConfiguration points at this install: install or upgrade the chart"
                .to_string(),
        ),
        Some((name, hook)) => {
            let mut conditions = hook.match_conditions.iter().flatten();
            match cluster_id {
                Some(c) if !conditions.any(|m| m.expression.contains(&format!("'{c}'"))) => fails.push(format!(
                    "MutatingWebhookConfiguration {name} does not carry cluster ID {c} in its matchConditions: set clusterId and upgrade"
                )),
                None => warns.push(format!("MutatingWebhookConfiguration {name}: no cluster ID known to compare")),
                _ => {}
            }
            let policy = hook.failure_policy.as_deref().unwrap_or("unset");
            if policy != "Fail" {
                warns.push(format!(
                    "failurePolicy is {policy}, shipped Fail: migrated objects may land unrewritten"
                ));
            }
            if hook.timeout_seconds != Some(SHIPPED_TIMEOUT_SECONDS) {
                warns.push(format!(
                    "timeoutSeconds is {}, shipped {SHIPPED_TIMEOUT_SECONDS}",
                    hook.timeout_seconds
                        .map_or("unset".into(), |t| t.to_string())
                ));
            }
            let ca = hook.client_config.ca_bundle.as_ref().map(|b| &b.0[..]);
            match check_certificate(w, ca.filter(|b| !b.is_empty())) {
                Err(fail) => fails.push(fail),
                Ok(warn) => warns.extend(warn),
            }
        }
    }
    match w.ready_replicas {
        None => fails.push("no Deployment for this install".into()),
        Some(n) if n < 1 => fails.push("the Deployment has no ready replica: the API server cannot reach the webhook (kubectl describe deployment, and the pods' logs)".into()),
        Some(_) => {}
    }
    let ok = match &w.serving_cert {
        ServingCert::ServerKept(secret) => format!("configured with this cluster's ID, caBundle holds a valid CA (the server keeps its certificate in Secret {secret}, not readable by this identity), replicas ready"),
        _ => format!("configured with this cluster's ID, caBundle verifies the serving certificate for {}, replicas ready", w.service_dns),
    };
    Check::judged("webhook", fails, warns, ok)
}

/// The serving certificate against the caBundle `ca` (PEM; `None` when empty): why it fails, or
/// what to warn of.
fn check_certificate(w: &WebhookFacts, ca: Option<&[u8]>) -> Result<Option<String>, String> {
    let ca = ca.ok_or("the webhook's caBundle is empty: the API server cannot trust the server (cert-manager's CA injector, or tls.caBundle)")?;
    let cert = match &w.serving_cert {
        ServingCert::Pem(c) => c,
        ServingCert::Missing(e) => return Err(format!("the serving certificate: {e}")),
        // The server keeps the caBundle equal to its Secret's bundle (and says so in
        // rancher_remap_ca_bundle_stale): what is left to check here is that it is usable.
        ServingCert::ServerKept(_) => return ca_bundle_usable(ca, w.now).map(|()| None),
    };
    let dns = &w.service_dns;
    let not_after = serving_cert_verifies(ca, cert, dns, w.now).map_err(|e| format!("the caBundle does not verify the serving certificate for {dns}: {e}. The API server will refuse the webhook's TLS: make the caBundle the CA that signed the Secret's certificate"))?;
    let left = not_after - w.now;
    let days = left / 86_400;
    let renew = format!("the serving certificate expires in {days} day(s): renew it");
    Ok((left < RENEW_WITHIN_SECONDS).then_some(renew))
}
