//! `serve`'s flags for certificates the server manages itself (`--cert-secret`).

use std::time::Duration;

use crate::pki::{self, plan::Policy};
use crate::server::managed_certs::ca_bundle::WebhookConfigRef;
use crate::server::managed_certs::Settings;

/// Certificates the server manages itself: a CA and serving pair in one Secret of its
/// namespace, created by the first replica, renewed before they expire, and the caBundle of its
/// own webhook configurations kept current. Instead of --tls-cert/--tls-key.
#[derive(Debug, clap::Args)]
pub struct ManagedCertArgs {
    /// NAMESPACE/NAME of the Secret to keep the CA and serving pair in (created if missing).
    /// Its namespace is the webhook Service's.
    #[arg(long, env = "RANCHER_REMAP_CERT_SECRET", value_name = "NS/NAME", value_parser = namespaced_name, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub cert_secret: Option<(String, String)>,

    /// With --cert-secret: the webhook Service's name; the certificate is for
    /// NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local.
    #[arg(long, env = "RANCHER_REMAP_SERVICE", value_name = "NAME", default_value = "rancher-remap", value_parser = super::certs::dns_label)]
    pub service: String,

    /// With --cert-secret: a webhook configuration whose caBundle this server keeps, as
    /// mutating/NAME or validating/NAME (repeatable; comma-separated in the environment
    /// variable). RBAC: get and patch on it.
    #[arg(
        long,
        env = "RANCHER_REMAP_WEBHOOK_CONFIGURATIONS",
        value_name = "KIND/NAME",
        value_delimiter = ','
    )]
    pub webhook_configuration: Vec<WebhookConfigRef>,

    /// With --cert-secret: how long a serving certificate is valid. It is renewed when a third
    /// of that is left.
    #[arg(long, env = "RANCHER_REMAP_CERT_VALIDITY", value_name = "DURATION", default_value = "365d", value_parser = super::parse_duration)]
    pub cert_validity: Duration,

    /// With --cert-secret: how long a CA is valid. A new one is added to the caBundle two
    /// serving lifetimes before it ends.
    #[arg(long, env = "RANCHER_REMAP_CA_VALIDITY", value_name = "DURATION", default_value = "3650d", value_parser = super::parse_duration)]
    pub ca_validity: Duration,

    /// With --cert-secret: during a CA rollover, how long every webhook configuration must have
    /// held the new CA before the serving certificate it signs is used (time for every API
    /// server to see the new caBundle).
    #[arg(long, env = "RANCHER_REMAP_CA_ROLLOVER_GRACE", value_name = "DURATION", default_value = "10m", value_parser = super::parse_duration)]
    pub ca_rollover_grace: Duration,

    /// With --cert-secret: how often the Secret and the caBundles are checked when nothing
    /// changed (puts back a caBundle an upgrade or a person reset).
    #[arg(long, env = "RANCHER_REMAP_CERT_RESYNC", value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration)]
    pub cert_resync: Duration,
}

impl ManagedCertArgs {
    /// The settings, when --cert-secret is given.
    pub fn settings(&self) -> Result<Option<Settings>, String> {
        let Some((namespace, secret)) = self.cert_secret.clone() else {
            return Ok(None);
        };
        if self.cert_validity >= self.ca_validity {
            return Err("--cert-validity must be shorter than --ca-validity".into());
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Some(Settings {
            policy: Policy {
                label: namespace.clone(),
                dns_names: pki::service_dns_names(&self.service, &namespace),
                serving_validity: secs(self.cert_validity),
                ca_validity: secs(self.ca_validity),
                rollover_grace: secs(self.ca_rollover_grace),
            },
            namespace,
            secret,
            webhooks: self.webhook_configuration.clone(),
            resync: self.cert_resync,
        }))
    }
}

/// `NAMESPACE/NAME`, both DNS-1123 labels.
fn namespaced_name(s: &str) -> Result<(String, String), String> {
    let bad = || {
        "expected NAMESPACE/NAME of a Secret (DNS-1123 labels), e.g. rancher-remap/rancher-remap-certs".to_string()
    };
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    crate::mapping::check_label(ns).map_err(|_| bad())?;
    crate::mapping::check_label(name).map_err(|_| bad())?;
    Ok((ns.to_string(), name.to_string()))
}
