//! `rancher-remap certs`: a development CA and serving certificate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::pki;

/// Create a CA and a serving certificate for the webhook Service (ECDSA P-256, for cheap
/// handshakes). Writes ca.crt, ca.key, tls.crt and tls.key, and prints the base64 caBundle
/// for the webhook configuration on stdout.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,

    /// Name of the webhook Service (a DNS-1123 label).
    #[arg(long, default_value = "rancher-remap", value_parser = dns_label)]
    pub service: String,

    /// Namespace of the webhook Service (a DNS-1123 label).
    #[arg(long, default_value = "rancher-remap", value_parser = dns_label)]
    pub namespace: String,

    /// Days the serving certificate is valid (1 to 3650). A new CA is valid ten times as long,
    /// so serving certificates can be renewed from it (--reuse-ca).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS as i64))]
    pub days: u32,

    /// Keep the CA already in --out (ca.crt, ca.key from an earlier run) and issue only a new
    /// serving pair: the caBundle stays the same, so a renewal needs no change to the webhook
    /// configurations and no call fails while kubelet updates the mounted Secret.
    #[arg(long, conflicts_with = "force")]
    pub reuse_ca: bool,

    /// Replace a CA already in --out with a new one. Every webhook configuration that trusts
    /// the old CA (its caBundle) then fails its calls until it gets the new caBundle.
    #[arg(long)]
    pub force: bool,
}

/// Longest serving certificate `certs` makes: ten years (its CA, ten times that).
const MAX_DAYS: u32 = 3650;

/// A Service or namespace name: it becomes a SAN that clients must match exactly.
pub(super) fn dns_label(s: &str) -> Result<String, String> {
    crate::mapping::check_label(s).map_err(|e| {
        format!("{e}; a Service or namespace name is a DNS-1123 label, e.g. rancher-remap")
    })?;
    Ok(s.to_string())
}

/// A CA and a serving pair signed by it.
pub struct Generated {
    pub ca: pki::PemPair,
    pub serving: pki::PemPair,
}

/// Generates the CA and a serving certificate for `service.namespace.svc` (plus localhost).
pub fn generate(service: &str, namespace: &str, days: u32) -> Result<Generated> {
    let now = time::OffsetDateTime::now_utc();
    let ca = pki::new_ca(namespace, now, now + days_of(days.saturating_mul(10)))?;
    issue(ca, service, namespace, days)
}

/// A new serving certificate and key from an existing CA (PEM certificate and key).
pub fn issue(ca: pki::PemPair, service: &str, namespace: &str, days: u32) -> Result<Generated> {
    let now = time::OffsetDateTime::now_utc();
    let mut names = pki::service_dns_names(service, namespace);
    names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    let serving = pki::issue_serving(&ca, &names, now, now + days_of(days)).map_err(|e| match e {
        pki::PkiError::OutlivesCa => anyhow::anyhow!(
            "the CA expires before a {days}-day certificate would: make a new CA (run without --reuse-ca) or ask for fewer --days"
        ),
        e => e.into(),
    })?;
    Ok(Generated { ca, serving })
}

fn days_of(days: u32) -> time::Duration {
    time::Duration::days(i64::from(days))
}

/// Writes a file; a private one (a key) is 0600 before its first byte is written: created with
/// that mode, and an existing file narrowed before it is truncated and filled.
fn write(dir: &Path, name: &str, content: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let path = dir.join(name);
    let context = || format!("writing {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).with_context(context)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(context)?;
    }
    let _ = private;
    file.set_len(0).with_context(context)?;
    file.write_all(content.as_bytes()).with_context(context)?;
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    let g = if args.reuse_ca {
        let read = |name: &str| {
            let path = args.out.join(name);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "--reuse-ca: reading {} (made by an earlier run)",
                    path.display()
                )
            })
        };
        let ca = pki::PemPair {
            cert: read("ca.crt")?,
            key: read("ca.key")?,
        };
        issue(ca, &args.service, &args.namespace, args.days)?
    } else {
        let ca = args.out.join("ca.crt");
        anyhow::ensure!(
            args.force || !ca.exists(),
            "{} already holds a CA: give --reuse-ca to issue a new serving pair from it (the caBundle stays), or --force to replace it (every webhook configuration then needs the new caBundle)",
            args.out.display()
        );
        generate(&args.service, &args.namespace, args.days)?
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, content) in [
        ("ca.crt", &g.ca.cert),
        ("ca.key", &g.ca.key),
        ("tls.crt", &g.serving.cert),
        ("tls.key", &g.serving.key),
    ] {
        write(&args.out, name, content, name.ends_with(".key"))?;
    }
    eprintln!(
        "wrote {}/{{ca.crt,ca.key,tls.crt,tls.key}} for {}.{}.svc; the caBundle (base64 of ca.crt) is on stdout",
        args.out.display(),
        args.service,
        args.namespace
    );
    println!("{}", STANDARD.encode(&g.ca.cert));
    Ok(ExitCode::SUCCESS)
}
