//! `rancher-remap audit`: the webhook's rewrite checked (and with `--fix` applied) on the objects
//! already in a cluster. The work is in [`crate::audit`]; this reads flags and prints.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::cluster::{ClusterArgs, Connected};
use super::ReportFormat;
use crate::audit::{self, Finding, FixResult, FixStatus, Namespaces, Progress, Report};
use crate::kube_error::KubeError;
use crate::rewrite::{MutateSettings, Scope, UnmappedPolicy};
use crate::source::Source;

/// Audit the objects already in the cluster: report each one the webhook would rewrite.
///
/// Lists every object of every resource type the API server lists and patches (core and
/// custom; Secrets only with --include-secrets), in the chosen namespaces, and runs the
/// webhook's rewrite on each. Types whose project IDs live only in metadata are listed
/// metadata-only. Exit status: 0
/// when nothing would change, 1 when something would, 2 on errors. With --fix, applies the
/// webhook's patch to each object, guarded by its resourceVersion (a change made in between is
/// read again, never overwritten); exit 0 when everything found was fixed, 2 when a patch failed.
/// Kubernetes credentials: in-cluster, or KUBECONFIG / ~/.kube/config.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub source: super::SourceArgs,

    /// What to do with a project ID that has no mapping, as the webhook does: drop removes the
    /// label or annotation on migrated objects (selectors are never shortened), keep leaves it,
    /// deny reports the object as refused.
    #[arg(long, env = "RANCHER_REMAP_UNMAPPED", value_enum, default_value_t)]
    pub unmapped: UnmappedPolicy,

    /// Which objects count: migrated (Stork's migrated annotation; a Namespace whose Rancher
    /// annotation names a source cluster of the table, or that holds a migrated object) or all.
    #[arg(long, env = "RANCHER_REMAP_SCOPE", value_enum, default_value_t)]
    pub scope: Scope,

    /// This cluster's Rancher ID (as `derive` prints it): a Namespace annotated with it is never
    /// changed. A Namespace annotated with a source cluster of the table counts as migrated
    /// either way.
    #[arg(long, env = "RANCHER_REMAP_CLUSTER_ID", value_name = "ID", value_parser = super::parse_cluster_id)]
    pub cluster_id: Option<String>,

    /// Audit only this namespace (repeatable; comma-separated in the environment variable).
    /// Default: every namespace except kube-system and the webhook's own, and cluster-scoped
    /// objects.
    #[arg(
        short,
        long,
        env = "RANCHER_REMAP_AUDIT_NAMESPACES",
        value_name = "NS",
        value_delimiter = ','
    )]
    pub namespace: Vec<String>,

    /// The webhook's own namespace, left out by default. Default: the namespace of
    /// --mappings-configmap, else this pod's namespace, else rancher-remap.
    #[arg(long, env = "RANCHER_REMAP_WEBHOOK_NAMESPACE", value_name = "NS")]
    pub webhook_namespace: Option<String>,

    /// Output format: table (for people) or json (one list of findings).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,

    /// Patch each object found, as the webhook would have.
    #[arg(long)]
    pub fix: bool,

    /// With --fix: none sends the patches; server sends them with dryRun=All (checked and
    /// admitted by the API server, stored nowhere).
    #[arg(long, value_enum, default_value_t, requires = "fix")]
    pub dry_run: DryRun,

    /// Patches tried per object that keeps changing under --fix.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_attempts: u16,

    /// Audit Secrets too. Left out by default, so the audit needs no right to read them (and
    /// never does): stderr says they were skipped. The service account then needs get and list
    /// on secrets (deploy/audit/secrets.yaml). The environment variable takes true/false, 1/0,
    /// yes/no or on/off.
    #[arg(
        long,
        env = "RANCHER_REMAP_AUDIT_INCLUDE_SECRETS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub include_secrets: bool,

    /// Objects per list request (memory grows with it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,

    /// API requests in flight at most.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    #[default]
    None,
    Server,
}

/// Where a pod finds its own namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub fn run(args: Args) -> Result<ExitCode> {
    let source = args.source.required()?;
    let audited = tokio::runtime::Runtime::new()?.block_on(async {
        let Connected { client, server } = args.cluster.connect(None).await?;
        audit(args, source, client).await.map_err(|e| {
            // Once, at the top: the URL, never the credential.
            match e.chain().any(|c| c.is::<KubeError>()) {
                true => e.context(format!("API server {server}")),
                false => e,
            }
        })
    });
    // Errors exit 2 here (1 means "something would change").
    Ok(match audited {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    })
}

async fn audit(args: Args, source: Source, client: kube::Client) -> Result<u8> {
    // A reversed table applied by --fix would move every migrated object back.
    let this = super::known_cluster_id(&args.cluster_id);
    let mappings = super::input::checked_mappings(source.read(Some(&client)).await?, this)?;
    let namespaces = if args.namespace.is_empty() {
        let own = args
            .webhook_namespace
            .clone()
            .or_else(|| args.source.mappings_configmap.clone().map(|c| c.namespace))
            .or_else(|| {
                let pod = std::fs::read_to_string(POD_NAMESPACE_FILE).ok()?;
                Some(pod.trim().to_string()).filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "rancher-remap".to_string());
        Namespaces::AllExcept(BTreeSet::from(["kube-system".to_string(), own]))
    } else {
        Namespaces::Only(super::trimmed(&args.namespace))
    };
    let settings = audit::Settings {
        rule: MutateSettings {
            unmapped: args.unmapped,
            scope: args.scope,
            cluster_id: this.map(str::to_string),
            ..MutateSettings::default()
        },
        namespaces,
        page_size: args.page_size,
        concurrency: args.concurrency.into(),
        fix: args.fix.then_some(audit::Fix {
            dry_run: args.dry_run == DryRun::Server,
            attempts: args.max_attempts.into(),
        }),
        include_secrets: args.include_secrets,
    };
    let progress = Arc::new(Progress::default());
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(show_progress(progress.clone())));
    let report = audit::run(&client, &mappings, &settings, &progress).await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[K");
    }
    let report = report.context("discovering the API server's resource types")?;
    let text = match args.output {
        ReportFormat::Json => super::input::pretty_json(&report.findings)?,
        ReportFormat::Table => table(&report.findings, args.fix),
    };
    super::input::print(&text)?;
    summary(&report, &settings);
    Ok(report.exit_status())
}

/// A line on a terminal, redrawn four times a second, while the audit runs.
async fn show_progress(p: Arc<Progress>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        eprint!(
            "\r\x1b[Kaudit: {}/{} resource types, {} objects, {} found",
            p.types_done.load(Ordering::Relaxed),
            p.types_total.load(Ordering::Relaxed),
            p.objects.load(Ordering::Relaxed),
            p.findings.load(Ordering::Relaxed),
        );
    }
}

/// One row per value: KIND NAMESPACE NAME PLACE CHANGE (RESULT with --fix), each column but
/// the last padded to its widest cell and two spaces.
fn table(findings: &[Finding], fix: bool) -> String {
    let columns = if fix { 6 } else { 5 };
    let header = ["KIND", "NAMESPACE", "NAME", "PLACE", "CHANGE", "RESULT"];
    let mut rows = vec![header[..columns].iter().map(|h| h.to_string()).collect()];
    for f in findings {
        let ns = f.namespace.as_deref().unwrap_or("-");
        let result = f.fix.as_ref().map(fix_result);
        let changes = f
            .changes
            .iter()
            .map(|c| (&c.path, format!("{} -> {}", c.from, c.to)));
        let unmapped = f.unmapped.iter().map(|u| {
            let change = format!("{} -> ({}: no mapping)", u.value, u.action);
            (&u.path, change)
        });
        for (path, change) in changes.chain(unmapped) {
            let row = [&f.kind, ns, &f.name, path, &change].map(String::from);
            rows.push(row.into_iter().chain(result.clone()).collect::<Vec<_>>());
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max();
    let widths: Vec<usize> = (0..columns - 1)
        .map(|i| width(i).unwrap_or(0) + 2)
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!("{cell:<w$}"));
        }
        out.push_str(&row[columns - 1]);
        out.push('\n');
    }
    out
}

/// What `--fix` did with one finding, for its RESULT cell.
fn fix_result(x: &FixResult) -> String {
    let dry_run = x.dry_run && x.result == FixStatus::Patched;
    let dry_run = if dry_run { " (dry run)" } else { "" };
    let error = x.error.as_ref().map_or(String::new(), |e| format!(": {e}"));
    format!("{}{dry_run}{error}", x.result.as_str())
}

/// What was done, on stderr (stdout holds only the findings).
fn summary(report: &Report, settings: &audit::Settings) {
    let mut err = std::io::stderr().lock();
    for s in &report.skipped {
        let _ = writeln!(err, "skipped: {s}");
    }
    for e in &report.errors {
        let _ = writeln!(err, "error: {e}");
    }
    let found = report.findings.len();
    let _ = match settings.fix {
        None => writeln!(
            err,
            "{found} object(s) would change, of {} audited in {} resource type(s)",
            report.objects, report.types
        ),
        Some(fix) => {
            let count = |s| {
                report
                    .findings
                    .iter()
                    .filter(|f| f.fix_status() == Some(s))
                    .count()
            };
            writeln!(
                err,
                "{found} object(s) needed a change, of {} audited in {} resource type(s): {} patched{}, {} already clean, {} gone, {} refused, {} failed",
                report.objects,
                report.types,
                count(FixStatus::Patched),
                if fix.dry_run { " (dry run)" } else { "" },
                count(FixStatus::AlreadyClean),
                count(FixStatus::Gone),
                count(FixStatus::Refused),
                count(FixStatus::Failed),
            )
        }
    };
    if !report.errors.is_empty() {
        let _ = writeln!(
            err,
            "the audit is incomplete: {} error(s)",
            report.errors.len()
        );
    }
}
