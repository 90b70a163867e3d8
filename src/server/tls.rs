//! Serving credentials: loaded and checked before binding, re-read when the files change
//! (including kubelet's atomic `..data` symlink swap for mounted Secrets). Each handshake takes
//! the pair in force, so rotation drops no connection; a bad new pair keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::metrics::{Metrics, ResultLabels};

/// The one crypto provider of this binary.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

/// The bytes of the certificate and key files, as read.
pub type PemPair = (Vec<u8>, Vec<u8>);

/// The files of the serving pair.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads both files' bytes.
    pub fn read(&self) -> Result<PemPair, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|error| TlsError::Read {
                path: p.display().to_string(),
                error,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Loads and checks the pair.
    /// (Returns the bytes it was made from too: the watcher compares against them, since
    /// re-reading later could miss a swap made in between.)
    pub fn load(&self) -> Result<(CertifiedKey, PemPair), TlsError> {
        let bytes = self.read()?;
        let ck = certified_key(
            &bytes.0,
            &bytes.1,
            &self.cert.display().to_string(),
            &self.key.display().to_string(),
        )?;
        Ok((ck, bytes))
    }
}

/// The serving pair in force, and the task that keeps it current (re-reading files, or
/// following the certificate Secret) for as long as the server runs.
pub struct Credentials {
    pub resolver: Arc<Resolver>,
    pub follow: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl CertFiles {
    /// Loads the pair and returns it with the watch that re-reads the files every `interval`.
    pub fn credentials(
        self,
        metrics: Arc<Metrics>,
        interval: Duration,
    ) -> Result<Credentials, TlsError> {
        let (ck, loaded) = self.load()?;
        metrics.certificate_expiry.set(not_after(&ck));
        let resolver = Arc::new(Resolver::new(ck));
        Ok(Credentials {
            resolver: resolver.clone(),
            follow: Box::pin(watch(self, loaded, resolver, metrics, interval)),
        })
    }
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
    let signing = provider()
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
pub fn not_after(ck: &CertifiedKey) -> i64 {
    ck.end_entity_cert()
        .ok()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map_or(0, |(_, cert)| cert.validity().not_after.timestamp())
}

/// Hands every handshake the pair in force.
#[derive(Debug)]
pub struct Resolver(ArcSwap<CertifiedKey>);

impl Resolver {
    pub fn new(ck: CertifiedKey) -> Self {
        Resolver(ArcSwap::from_pointee(ck))
    }

    pub fn set(&self, ck: CertifiedKey) {
        self.0.store(Arc::new(ck));
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1, no client authentication (kube-apiserver
/// authenticates the webhook, not the other way round).
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Re-reads the files every `interval`; when their bytes change, loads the new pair and swaps it
/// in, or keeps the old one and says so. Polling the content (not inotify) follows symlink swaps
/// and bind mounts alike, and costs two small reads per interval.
pub async fn watch(
    files: CertFiles,
    loaded: PemPair,
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let mut last = Some(loaded);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(current) = files.read() else {
            // Mid-swap a file may be briefly missing: try again next tick.
            continue;
        };
        if last.as_ref() == Some(&current) {
            continue;
        }
        match certified_key(
            &current.0,
            &current.1,
            &files.cert.display().to_string(),
            &files.key.display().to_string(),
        ) {
            Ok(ck) => {
                metrics.certificate_expiry.set(not_after(&ck));
                resolver.set(ck);
                metrics
                    .certificate_reloads
                    .get(&ResultLabels { result: "ok" })
                    .inc();
                tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                metrics
                    .certificate_reloads
                    .get(&ResultLabels { result: "rejected" })
                    .inc();
                tracing::error!(error = %e, "new serving certificate rejected; keeping the previous one");
            }
        }
        last = Some(current);
    }
}
