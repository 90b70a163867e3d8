//! `rancher-remap certs`: a development CA and serving certificate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine;

/// Create a CA and a serving certificate for the webhook Service (ECDSA P-256, for cheap
/// handshakes). Writes ca.crt, ca.key, tls.crt and tls.key, and prints the base64 caBundle
/// for the webhook configuration on stdout.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,

    /// Name of the webhook Service.
    #[arg(long, default_value = "rancher-remap")]
    pub service: String,

    /// Namespace of the webhook Service.
    #[arg(long, default_value = "rancher-remap")]
    pub namespace: String,

    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// The PEM files of a CA and a serving certificate signed by it.
pub struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub tls_cert: String,
    pub tls_key: String,
}

/// Generates the CA and a serving certificate for `service.namespace.svc` (plus localhost).
pub fn generate(service: &str, namespace: &str, days: u32) -> Result<Generated> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(days));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("rancher-remap CA ({namespace})"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, &ca_key);

    let key = KeyPair::generate()?;
    let sans = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let mut leaf = CertificateParams::new(sans)?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = until;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        tls_cert: cert.pem(),
        tls_key: key.serialize_pem(),
    })
}

fn write(dir: &Path, name: &str, content: &str, private: bool) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = private;
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    let g = generate(&args.service, &args.namespace, args.days)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write(&args.out, "ca.crt", &g.ca_cert, false)?;
    write(&args.out, "ca.key", &g.ca_key, true)?;
    write(&args.out, "tls.crt", &g.tls_cert, false)?;
    write(&args.out, "tls.key", &g.tls_key, true)?;
    eprintln!(
        "wrote {}/{{ca.crt,ca.key,tls.crt,tls.key}} for {}.{}.svc; caBundle:",
        args.out.display(),
        args.service,
        args.namespace
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&g.ca_cert)
    );
    Ok(ExitCode::SUCCESS)
}
