//! The serving certificate and key: loaded and checked before binding, then kept current, from
//! files re-read when they change (including kubelet's atomic `..data` symlink swap for mounted
//! Secrets) or by the certificate keeper ([`crate::managed_certs`]). Each handshake takes the
//! pair in force, so rotation drops no connection; a bad new pair keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::content_poll::ContentPoll;
use crate::metrics::{by_result, registered, ByResult};

/// The serving certificate's metrics (`rancher_remap_certificate_*`), whoever keeps it.
#[derive(Clone, Debug)]
pub struct CertMetrics {
    /// By result: `ok`, or `rejected` (a new pair that cannot be served; the one in force stays).
    reloads: ByResult,
    expiry: Gauge,
}

impl CertMetrics {
    pub fn register(registry: &mut Registry) -> CertMetrics {
        let r = registry.sub_registry_with_prefix("certificate");
        CertMetrics {
            reloads: by_result(
                r,
                "reloads",
                "Serving certificate reloads by result (ok, rejected)",
                &["ok", "rejected"],
            ),
            expiry: registered(
                r,
                "expiry_timestamp_seconds",
                "notAfter of the serving certificate in force, in Unix seconds",
            ),
        }
    }

    /// Counts a new pair that cannot be served (the one in force stays): the one place that
    /// names the label, which `ByResult::count` checks only when called.
    pub fn refused(&self) {
        self.reloads.count("rejected");
    }
}

/// Why a certificate/key pair cannot be served. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// (The I/O error is in the message, not a `source`: a report of the chain would say it
    /// twice.)
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0}: no PEM CERTIFICATE block")]
    NoCertificate(String),
    #[error("{0}: no usable PEM private key (PKCS#8, PKCS#1 RSA, SEC1 EC)")]
    NoKey(String),
    #[error("{0}: the private key is of an unsupported type")]
    UnsupportedKey(String),
    #[error("the certificate and the private key do not belong together")]
    Mismatch,
}

impl TlsError {
    /// A file of the pair is not there (a first run, a wrong path).
    pub fn is_missing_file(&self) -> bool {
        matches!(self, Self::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// The bytes of the certificate and key files, as read.
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|error| TlsError::Read {
                path: p.display().to_string(),
                error,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Checks the pair read from these files.
    fn certified_key(&self, (cert, key): &(Vec<u8>, Vec<u8>)) -> Result<CertifiedKey, TlsError> {
        let name = |p: &Path| p.display().to_string();
        certified_key(cert, key, &name(&self.cert), &name(&self.key))
    }

    /// Loads the pair and returns it with the watch that re-reads the files every `interval`.
    /// (The watch compares against the bytes loaded here: re-reading later could miss a swap
    /// made in between.)
    pub fn credentials(
        self,
        metrics: CertMetrics,
        interval: Duration,
    ) -> Result<Credentials, TlsError> {
        let loaded = self.read()?;
        let resolver = Arc::new(Resolver::new(self.certified_key(&loaded)?, metrics));
        let in_force = resolver.clone();
        // When the bytes change, the new pair is swapped in, or the old one kept (and said so).
        let follow = async move {
            let mut poll = ContentPoll::new(interval, Some(loaded));
            loop {
                // Mid-swap a file may be briefly missing: try again next tick.
                let Ok(current) = poll.changed(|| std::future::ready(self.read())).await else {
                    continue;
                };
                match self.certified_key(current) {
                    Ok(ck) => {
                        in_force.swap(ck);
                        tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    }
                    Err(e) => {
                        in_force.metrics.refused();
                        tracing::error!(error = %e, "new serving certificate rejected; keeping the previous one");
                    }
                }
            }
        };
        Ok(Credentials {
            resolver,
            follow: Box::pin(follow),
        })
    }
}

/// The serving pair in force, and the task that keeps it current (re-reading files, or
/// following the certificate Secret) for as long as the server runs.
pub struct Credentials {
    pub resolver: Arc<Resolver>,
    pub follow: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Parses and checks a PEM certificate chain and key.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_name.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| TlsError::NoKey(key_name.to_string()))?;
    let signing = crate::crypto::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsError::UnsupportedKey(key_name.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| TlsError::Mismatch)?;
    Ok(ck)
}

/// notAfter of the leaf certificate, in Unix seconds (0 if it cannot be read: the pair was
/// already accepted by rustls, so that does not happen in practice, and 0 makes any expiry
/// alert fire rather than stay silent).
fn not_after(ck: &CertifiedKey) -> i64 {
    ck.end_entity_cert()
        .ok()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map_or(0, |(_, cert)| cert.validity().not_after.timestamp())
}

/// Hands every handshake the pair in force.
#[derive(Debug)]
pub struct Resolver {
    in_force: ArcSwap<CertifiedKey>,
    metrics: CertMetrics,
}

impl Resolver {
    pub fn new(ck: CertifiedKey, metrics: CertMetrics) -> Self {
        metrics.expiry.set(not_after(&ck));
        Resolver {
            in_force: ArcSwap::from_pointee(ck),
            metrics,
        }
    }

    /// Serves `ck` from the next handshake on, and counts the reload.
    pub fn swap(&self, ck: CertifiedKey) {
        self.metrics.expiry.set(not_after(&ck));
        self.in_force.store(Arc::new(ck));
        self.metrics.reloads.count("ok");
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.in_force.load_full())
    }
}
