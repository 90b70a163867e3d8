//! `serve`'s flags for certificates the server manages itself (`--cert-secret`).

use std::time::Duration;

use crate::managed_certs::ca_bundle::WebhookConfigRef;
use crate::managed_certs::Settings;
use crate::pki::{self, plan::Policy};

/// Certificates the server manages itself: a CA and serving pair in one Secret of its
/// namespace, created by the first replica, renewed before they expire, and the caBundle of its
/// own webhook configurations kept current. Instead of --tls-cert/--tls-key.
#[derive(Debug, clap::Args)]
pub struct ManagedCertArgs {
    /// [NAMESPACE/]NAME of the Secret to keep the CA and serving pair in (created if missing);
    /// without NAMESPACE, the client's own (in a pod, the pod's). Its namespace is the webhook
    /// Service's.
    #[arg(long, env = "RANCHER_REMAP_CERT_SECRET", value_name = "[NS/]NAME", value_parser = namespaced_name, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub cert_secret: Option<(Option<String>, String)>,

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

    /// With --cert-secret: how long a CA is valid (more than three times --cert-validity). A
    /// new one is added to the caBundle two serving lifetimes before it ends.
    #[arg(long, env = "RANCHER_REMAP_CA_VALIDITY", value_name = "DURATION", default_value = "3650d", value_parser = super::parse_duration)]
    pub ca_validity: Duration,

    /// With --cert-secret: during a CA rollover, how long every webhook configuration must have
    /// held the new CA, unchanged, before the serving certificate it signs is used (time for
    /// every API server to see the new caBundle). Under a third of --cert-validity.
    #[arg(long, env = "RANCHER_REMAP_CA_ROLLOVER_GRACE", value_name = "DURATION", default_value = "10m", value_parser = super::parse_duration)]
    pub ca_rollover_grace: Duration,

    /// With --cert-secret: how often the Secret and the caBundles are checked when nothing
    /// changed (puts back a caBundle an upgrade or a person reset).
    #[arg(long, env = "RANCHER_REMAP_CERT_RESYNC", value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration)]
    pub cert_resync: Duration,
}

impl ManagedCertArgs {
    /// Refuses settings that cannot work (before anything starts).
    pub fn check(&self) -> Result<(), String> {
        // The CA is rolled over two serving lifetimes before it ends; a shorter CA would roll
        // over as soon as it is made.
        if self.cert_secret.is_some() && self.ca_validity <= self.cert_validity * 3 {
            return Err("--ca-validity must be more than three times --cert-validity".into());
        }
        // The grace must end well before the pair renewed at the rollover's start falls due.
        if self.cert_secret.is_some() && self.ca_rollover_grace * 3 >= self.cert_validity {
            return Err("--ca-rollover-grace must be under a third of --cert-validity".into());
        }
        Ok(())
    }

    /// The settings, when --cert-secret is given; `client_namespace` when it names none.
    pub fn settings(&self, client_namespace: &str) -> Option<Settings> {
        let (namespace, secret) = self.cert_secret.clone()?;
        let namespace = namespace.unwrap_or_else(|| client_namespace.to_string());
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Some(Settings {
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
        })
    }
}

/// `[NAMESPACE/]NAME`, DNS-1123 labels.
fn namespaced_name(s: &str) -> Result<(Option<String>, String), String> {
    let bad = || {
        "expected [NAMESPACE/]NAME of a Secret (DNS-1123 labels), e.g. rancher-remap/rancher-remap-certs".to_string()
    };
    let (ns, name) = s
        .split_once('/')
        .map_or((None, s), |(ns, name)| (Some(ns), name));
    for label in ns.iter().chain([&name]) {
        crate::mapping::check_label(label).map_err(|_| bad())?;
    }
    Ok((ns.map(str::to_string), name.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// `serve`'s flags alone.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        certs: super::ManagedCertArgs,
        #[arg(long)]
        tls_cert: Option<String>,
        #[arg(long)]
        tls_key: Option<String>,
    }

    fn parse(args: &[&str]) -> Result<Serve, clap::Error> {
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
    }

    #[test]
    fn the_secret_is_in_the_namespace_given_or_the_clients_own() {
        let settings = |args: &[&str]| parse(args).unwrap().certs.settings("pod-ns");
        let s = settings(&["--cert-secret", "other/certs", "--service", "hook"]).unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.secret.as_str()),
            ("other", "certs")
        );
        let names = ["hook.other.svc", "hook.other.svc.cluster.local"];
        assert_eq!(s.policy.dns_names, names);
        let s = settings(&["--cert-secret", "certs"]).unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.secret.as_str()),
            ("pod-ns", "certs")
        );
        assert_eq!(s.policy.serving_validity, 365 * 86_400);
        assert_eq!(s.policy.ca_validity, 3_650 * 86_400);
        assert!(settings(&[]).is_none());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--cert-secret", "a/b/c"][..],
            &["--cert-secret", "Certs"],
            &["--cert-secret", "x", "--tls-cert", "f"],
            &["--cert-secret", "x", "--webhook-configuration", "mutate/x"],
            &["--cert-secret", "x", "--cert-validity", "10"],
            &["--cert-secret", "x", "--cert-validity", "0s"],
            // A last character of more than one byte (once a panic in the split).
            &["--cert-secret", "x", "--cert-validity", "10µ"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let longer = "--cert-secret x --cert-validity 20d --ca-validity 10d";
        let longer = parse(&longer.split(' ').collect::<Vec<_>>()).unwrap();
        assert!(longer.certs.check().is_err());
    }
}
