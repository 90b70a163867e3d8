//! Certificates the server manages itself (`serve --cert-secret`), as rancher-webhook and
//! Kyverno do: no `lookup` at install, nothing random in the rendered manifests, nothing for
//! GitOps tools to fight over.
//!
//! Every replica runs the same loop: read the Secret, keep the webhook configurations' caBundle
//! equal to its bundle, ask [`crate::pki::plan`] what to change, write that conditionally, and
//! serve the Secret's pair. The Secret is watched, so a pair another replica wrote is served
//! within moments; the loop also wakes when the plan says something falls due, and every
//! `resync` to put back a caBundle that an upgrade or a person reset.

pub mod ca_bundle;
mod secret;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::watcher::watch_object;
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use self::ca_bundle::WebhookConfigRef;
use self::secret::Written;
use crate::kube_error::KubeError;
use crate::metrics::{by_result, registered, ByResult};
use crate::pki::plan::{self, Policy, Step, Stored};
use crate::pki::PemPair;
use crate::serving_cert::{certified_key, CertMetrics, Credentials, Resolver};

/// What `serve --cert-secret` was told.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    /// The Secret holding the CA, the serving pair and the bundle.
    pub secret: String,
    pub policy: Policy,
    /// The configurations whose caBundle this server keeps.
    pub webhooks: Vec<WebhookConfigRef>,
    /// How often the Secret and the caBundles are checked when nothing else wakes the loop.
    pub resync: Duration,
}

/// The keeper's metrics (`rancher_remap_certificate_secret_writes`, `rancher_remap_ca_bundle_*`),
/// exported (at zero) without `--cert-secret` too.
#[derive(Clone, Debug)]
pub struct KeeperMetrics {
    secret_writes: ByResult,
    ca_bundle_patches: ByResult,
    ca_bundle_stale: Gauge,
}

impl KeeperMetrics {
    pub fn register(registry: &mut Registry) -> KeeperMetrics {
        let secret_writes = by_result(
            registry.sub_registry_with_prefix("certificate"),
            "secret_writes",
            "Writes of the certificate Secret (--cert-secret) by result (ok, conflict, failed)",
            &["ok", "conflict", "failed"],
        );
        let r = registry.sub_registry_with_prefix("ca_bundle");
        KeeperMetrics {
            secret_writes,
            ca_bundle_patches: by_result(
                r,
                "patches",
                "caBundle patches of the webhook configurations (--cert-secret) by result (ok, failed)",
                &["ok", "failed"],
            ),
            ca_bundle_stale: registered(
                r,
                "stale",
                "Webhook configurations whose caBundle could not be brought up to date on the last pass (--cert-secret)",
            ),
        }
    }
}

/// The shortest time between two passes of the loop.
const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);

/// Conflicting writes in a row before a pass gives up until the next (another replica is
/// writing: its version arrives through the watch).
const CONFLICTS_PER_PASS: u32 = 5;

/// Transient failures at start are retried this often before the server gives up (and the
/// pod restarts with the reason in its log).
const START_ATTEMPTS: u32 = 6;

/// Reads (or creates) the Secret's pair before the listener binds, and returns it with the
/// loop that keeps it current.
pub async fn start(
    client: Client,
    settings: Settings,
    certificate: CertMetrics,
    metrics: KeeperMetrics,
) -> anyhow::Result<Credentials> {
    let mut keeper = Keeper {
        api: Api::namespaced(client.clone(), &settings.namespace),
        origin: format!("{}/{}", settings.namespace, settings.secret),
        client,
        settings,
        certificate,
        metrics,
        in_force: None,
        last: None,
        published: None,
    };
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1;
    let wake = loop {
        match keeper.pass().await {
            Ok(wake) => break wake,
            Err(e) if attempt < START_ATTEMPTS && e.is_transient() => {
                tracing::warn!(secret = %keeper.origin, error = %e, "reading the certificate Secret failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => {
                let origin = &keeper.origin;
                return Err(e).context(format!(
                    "managing the serving certificate in Secret {origin}"
                ));
            }
        }
    };
    // The resolver alone: cloning the pair in force would copy its private key.
    let resolver = keeper.in_force.as_ref().map(|(_, r)| r.clone());
    let resolver = resolver.context("no serving pair after the first pass")?;
    Ok(Credentials {
        resolver,
        follow: Box::pin(keeper.follow(wake)),
    })
}

/// One replica's certificate keeper: what it serves, and what it last read and published.
struct Keeper {
    api: Api<Secret>,
    /// `namespace/name` of the Secret, for the log.
    origin: String,
    client: Client,
    settings: Settings,
    certificate: CertMetrics,
    metrics: KeeperMetrics,
    /// The serving pair in force and the resolver serving it (from the first pass with a pair).
    in_force: Option<(PemPair, Arc<Resolver>)>,
    /// The material last read or written: a deleted Secret is made again from it, so deleting
    /// it by mistake does not change the CA.
    last: Option<Stored>,
    /// What every webhook configuration held, unchanged, at the last pass, and since when: the
    /// rollover's grace counts from there.
    published: Option<Published>,
}

/// Every webhook configuration holding `bundle`, at these resourceVersions, since `since` (Unix
/// seconds).
struct Published {
    bundle: String,
    versions: Vec<String>,
    since: i64,
}

impl Keeper {
    /// Follows the Secret for ever: a pass on every change, when something falls due, and
    /// every resync.
    async fn follow(mut self, mut wake: i64) {
        let mut changes = watch_object(self.api.clone(), &self.settings.secret)
            .default_backoff()
            .boxed();
        let mut watching = true;
        loop {
            // At least a second between passes, however the plan or the watch wake the loop:
            // a pass makes a few calls, and nothing here needs to be faster.
            let due = Duration::from_secs(u64::try_from(wake - plan::now()).unwrap_or(0));
            let sleep = due.clamp(
                MIN_PASS_INTERVAL,
                self.settings.resync.max(MIN_PASS_INTERVAL),
            );
            let started = tokio::time::Instant::now();
            tokio::select! {
                change = changes.next(), if watching => match change {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(secret = %self.origin, error = %e, "watching the certificate Secret failed; retrying with backoff");
                        continue;
                    }
                    // The watcher never ends on its own; if it did, the timer still runs passes.
                    None => watching = false,
                },
                _ = tokio::time::sleep(sleep) => {}
            }
            tokio::time::sleep_until(started + MIN_PASS_INTERVAL).await;
            wake = match self.pass().await {
                Ok(wake) => wake,
                Err(e) => {
                    self.metrics.secret_writes.count("failed");
                    tracing::error!(secret = %self.origin, error = %e, "managing the serving certificate failed; serving the pair in force, trying again");
                    plan::now() + self.settings.resync.as_secs() as i64
                }
            };
        }
    }

    /// Reads the Secret, publishes its bundle, writes what the plan asks (again on a conflict)
    /// and serves the result. Returns when the plan next falls due.
    async fn pass(&mut self) -> Result<i64, KubeError> {
        for _ in 0..CONFLICTS_PER_PASS {
            let current = self.api.get_opt(&self.settings.secret).await?;
            let now = plan::now();
            let (stored, restore) = self.material(current.as_ref(), now);
            let since = match &stored {
                Some(s) if plan::usable(s, now) => self.publish(&s.bundle, now).await,
                _ => None,
            };
            let step = plan::plan(stored.as_ref(), &self.settings.policy, now, since);
            let in_store = match step {
                Step::Keep { until } if !restore => {
                    let s = stored.expect("Keep means there is material");
                    self.serve(&s);
                    self.last = Some(s);
                    return Ok(until);
                }
                _ => match self
                    .write(step, current.as_ref(), stored.as_ref(), now)
                    .await?
                {
                    Some(secret) => secret::stored(&secret),
                    None => continue,
                },
            };
            let since = self.publish(&in_store.bundle, now).await;
            self.serve(&in_store);
            let next = plan::plan(Some(&in_store), &self.settings.policy, now, since);
            self.last = Some(in_store);
            return Ok(match next {
                Step::Keep { until } => until,
                _ => now,
            });
        }
        Ok(plan::now())
    }

    /// The material to plan on, and whether it must be written back: what the Secret holds,
    /// or, when the Secret is gone or holds nothing usable, the material this replica serves
    /// (so a deleted or mangled Secret does not change the CA).
    fn material(&self, current: Option<&Secret>, now: i64) -> (Option<Stored>, bool) {
        let read = current.map(secret::stored);
        let last = self.last.as_ref().filter(|l| plan::usable(l, now));
        match (read, last) {
            (Some(r), _) if plan::usable(&r, now) => (Some(r), false),
            (read, Some(last)) => {
                let what = read.map_or("is gone", |_| "holds no usable certificates");
                tracing::warn!(secret = %self.origin, "the certificate Secret {what}; writing back the pair in force (same CA)");
                (Some(last.clone()), true)
            }
            (read, None) => (read, false),
        }
    }

    /// Makes the material `step` asks for and writes it: a create when there is no Secret, an
    /// update conditional on the version read otherwise.
    async fn write(
        &self,
        step: Step,
        current: Option<&Secret>,
        stored: Option<&Stored>,
        now: i64,
    ) -> Written {
        let new = plan::apply(step, stored, &self.settings.policy, now)
            .map_err(|e| kube::Error::Service(e.to_string().into()))?;
        let written = match current {
            None => secret::create(&self.api, &self.settings.secret, new).await,
            Some(s) => {
                let version = s.resource_version().unwrap_or_default();
                secret::update(&self.api, &self.settings.secret, &version, new).await
            }
        }?;
        match &written {
            Some(_) => {
                self.metrics.secret_writes.count("ok");
                tracing::info!(secret = %self.origin, step = describe(step), "certificate Secret written");
            }
            None => {
                self.metrics.secret_writes.count("conflict");
                tracing::info!(secret = %self.origin, "another replica changed the certificate Secret first; reading it again");
            }
        }
        Ok(written)
    }

    /// Brings every webhook configuration's caBundle to `bundle`. Since when every one has held
    /// it, unchanged, as this replica has seen (`now` when this pass patched one, or found one
    /// changed since the last pass: a reset and a restore restart the grace); `None` when one
    /// does not hold it.
    async fn publish(&mut self, bundle: &str, now: i64) -> Option<i64> {
        let mut versions = Vec::with_capacity(self.settings.webhooks.len());
        let mut stale = 0;
        for at in &self.settings.webhooks {
            match ca_bundle::sync(&self.client, at, bundle).await {
                Ok((patched, version)) => {
                    if patched {
                        self.metrics.ca_bundle_patches.count("ok");
                        tracing::info!(configuration = %at, "caBundle updated");
                    }
                    versions.push(version);
                }
                Err(reason) => {
                    stale += 1;
                    self.metrics.ca_bundle_patches.count("failed");
                    tracing::error!(configuration = %at, error = %reason, "cannot bring the caBundle up to date; API servers may not trust this server's certificate after its next renewal");
                }
            }
        }
        self.metrics.ca_bundle_stale.set(stale);
        if stale > 0 {
            self.published = None;
            return None;
        }
        // Kept as it is while every configuration holds the same bundle at the same versions.
        match &self.published {
            Some(p) if p.bundle == bundle && p.versions == versions => Some(p.since),
            _ => {
                self.published = Some(Published {
                    bundle: bundle.to_string(),
                    versions,
                    since: now,
                });
                Some(now)
            }
        }
    }

    /// Puts the stored serving pair in force if it is not already.
    fn serve(&mut self, s: &Stored) {
        if self.in_force.as_ref().map(|(pair, _)| pair) == Some(&s.serving) {
            return;
        }
        let ck = match certified_key(
            s.serving.cert.as_bytes(),
            s.serving.key.as_bytes(),
            "tls.crt",
            "tls.key",
        ) {
            Ok(ck) => ck,
            Err(e) => {
                self.certificate.refused();
                tracing::error!(secret = %self.origin, error = %e, "the Secret's serving pair cannot be served; keeping the one in force");
                return;
            }
        };
        let resolver = match self.in_force.take() {
            Some((_, r)) => {
                r.swap(ck);
                tracing::info!(secret = %self.origin, "serving certificate renewed");
                r
            }
            None => Arc::new(Resolver::new(ck, self.certificate.clone())),
        };
        self.in_force = Some((s.serving.clone(), resolver));
    }
}

/// A step for the log.
fn describe(step: Step) -> String {
    match step {
        Step::Keep { .. } => "the pair in force again (the Secret was deleted or unusable)".into(),
        Step::Replace(why) => format!("new CA and serving pair ({})", why.as_str()),
        Step::RenewServing(why) => format!("new serving pair ({})", why.as_str()),
        Step::StartRollover => "new CA added to the bundle (rollover started)".into(),
        Step::DropPreviousCa => "expired CA removed from the bundle".into(),
    }
}
