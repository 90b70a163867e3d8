//! Certificate material for the webhook's TLS listener: a CA, serving pairs it signs, and what
//! a PEM certificate says about itself. Pure (no files, no clock: callers pass the time), so the
//! `certs` command and the server's own certificate management make the same certificates.
//!
//! [`plan`] decides when the serving pair is renewed and when the CA is rolled over.

pub mod plan;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

/// Why material cannot be made or read. Never holds key material or certificate bodies.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the {0} is not a PEM X.509 certificate")]
    NotACertificate(&'static str),
    #[error("the {0} is not a usable PEM private key")]
    NotAKey(&'static str),
    #[error("the CA expires before a certificate valid until then would: make a new CA or ask for a shorter validity")]
    OutlivesCa,
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    // Never the key; the certificate is public but long and says nothing a log needs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemPair { .. }")
    }
}

/// Certificates are valid from this long before they are made: an API server whose clock is a
/// little behind still accepts them.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// A new self-signed CA, valid from `now` (backdated) until `until`. Its common name carries
/// its creation time and a tag from its key, so a CA and the next one never share a subject (a
/// client picks the root for a chain by the issuer's name).
pub fn new_ca(
    label: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<PemPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let stamp = now.unix_timestamp();
    let name = format!("rancher-remap CA ({label}) {stamp} {}", tag(&key));
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - BACKDATE;
    ca.not_after = until;
    let cert = ca.self_signed(&key)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Eight hex digits from the end of a new public key (random, since the key is).
fn tag(key: &KeyPair) -> String {
    use rcgen::PublicKeyData;
    let raw = key.der_bytes();
    raw[raw.len().saturating_sub(4)..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new serving pair for `dns_names` signed by `ca`, valid from `now` (backdated) until
/// `until`, which must not be after the CA's own end.
pub fn issue_serving(
    ca: &PemPair,
    dns_names: &[String],
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<PemPair, PkiError> {
    let ca_info = CertInfo::parse(&ca.cert, "CA certificate")?;
    if until.unix_timestamp() > ca_info.not_after {
        return Err(PkiError::OutlivesCa);
    }
    let signing_key = KeyPair::from_pem(&ca.key).map_err(|_| PkiError::NotAKey("CA key"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert, &signing_key)
        .map_err(|_| PkiError::NotACertificate("CA certificate"))?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(dns_names.to_vec())?;
    if let Some(first) = dns_names.first() {
        leaf.distinguished_name
            .push(DnType::CommonName, first.clone());
    }
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = now - BACKDATE;
    leaf.not_after = until;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The DNS names of a webhook Service: `service.namespace.svc` and its `.cluster.local` form.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// What a certificate says about itself, as far as renewal cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// DER of the subject name: CAs made by [`new_ca`] never share one.
    pub subject: Vec<u8>,
    pub is_ca: bool,
    /// The DNS names of the subjectAltName extension, in order.
    pub dns_names: Vec<String>,
    /// DER of the SubjectPublicKeyInfo, to check a key belongs to this certificate.
    pub public_key: Vec<u8>,
    /// The whole certificate (DER), to check signatures.
    der: Vec<u8>,
}

impl CertInfo {
    /// Reads the first certificate of a PEM text. `what` names it in the error.
    pub fn parse(pem: &str, what: &'static str) -> Result<CertInfo, PkiError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| PkiError::NotACertificate(what))?;
        CertInfo::from_der(&der).ok_or(PkiError::NotACertificate(what))
    }

    /// Reads every certificate of a PEM bundle, in order; `None` if any block is not one.
    pub fn parse_bundle(pem: &str) -> Option<Vec<CertInfo>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|der| der.ok().and_then(|d| CertInfo::from_der(&d)))
            .collect()
    }

    fn from_der(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok().flatten();
        let names = san.iter().flat_map(|san| &san.value.general_names);
        let dns_names = names
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect();
        Some(CertInfo {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            subject: cert.subject().as_raw().to_vec(),
            is_ca: cert.is_ca(),
            dns_names,
            public_key: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }

    /// Whether `key_pem` is the private key of this certificate.
    pub fn matches_key(&self, key_pem: &str) -> bool {
        use rcgen::PublicKeyData;
        KeyPair::from_pem(key_pem).is_ok_and(|k| k.subject_public_key_info() == self.public_key)
    }

    /// Whether `ca` signed this certificate: its issuer names `ca` and the signature verifies
    /// with `ca`'s key (names alone could be forged or repeat).
    pub fn issued_by(&self, ca: &CertInfo) -> bool {
        let parse = |der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        };
        let (Some(leaf), Some(ca)) = (parse(&self.der), parse(&ca.der)) else {
            return false;
        };
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// Unix seconds as a time, clamped to what X.509 can say.
pub fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
