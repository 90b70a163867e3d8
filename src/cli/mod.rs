//! The command line: one module per command, each a thin adapter over the library.

mod audit;
pub mod certs;
mod check;
pub mod cluster;
mod derive;
mod doctor;
mod export_policy;
mod input;
mod map_projects;
mod rewrite;
pub mod serve;
mod serve_certs;
mod whoami;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rewrites Rancher project IDs in objects that Portworx Stork migrates between clusters.
///
/// On the destination cluster `serve` runs the mutating webhook that rewrites project IDs on
/// admission; on the source cluster it validates ClusterPairs. The other commands do the same
/// work offline.
#[derive(Debug, Parser)]
#[command(name = "rancher-remap", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(Box<serve::Args>),
    Rewrite(rewrite::Args),
    Derive(derive::Args),
    Check(check::Args),
    Certs(certs::Args),
    Audit(audit::Args),
    Doctor(doctor::Args),
    MapProjects(map_projects::Args),
    ExportPolicy(export_policy::Args),
}

/// Output formats for commands that print Kubernetes objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A YAML stream, one document per object.
    #[default]
    Yaml,
    /// JSON: the object itself when there is one, else a v1 List.
    Json,
}

/// `--version`: the version, the commit built from and that commit's date (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RANCHER_REMAP_COMMIT"),
    ", ",
    env!("RANCHER_REMAP_BUILD_DATE"),
    ")"
);

/// Where the mapping table comes from, the same three flags for `serve` and `audit`: at most
/// one (clap's group); each command checks that one is there (`serve` also takes none with
/// `--validate-only`, which stays out of the group so that `RANCHER_REMAP_VALIDATE_ONLY=false`
/// beside a mapping source means what it says).
#[derive(Debug, Clone, clap::Args)]
#[group(multiple = false)]
pub struct SourceArgs {
    /// Mappings in storkctl's --project-mappings syntax.
    #[arg(long, env = "RANCHER_REMAP_PROJECT_MAPPINGS", value_name = "STR")]
    pub project_mappings: Option<String>,

    /// A mapping ConfigMap, ClusterPair(s) or plain src=dst text (`serve` follows it for
    /// changes, kubelet's update of a mounted ConfigMap included).
    #[arg(long, env = "RANCHER_REMAP_MAPPINGS_FILE", value_name = "PATH")]
    pub mappings_file: Option<std::path::PathBuf>,

    /// The mapping ConfigMap made by `derive`, read through the API server (`serve` watches
    /// it: get, list and watch on it, and create on Events).
    #[arg(long, env = "RANCHER_REMAP_MAPPINGS_CONFIGMAP", value_name = "NS/NAME")]
    pub mappings_configmap: Option<crate::source::ConfigMapRef>,
}

impl SourceArgs {
    /// The mapping source given, if any.
    pub fn given(&self) -> Option<crate::source::Source> {
        use crate::source::Source;
        let file = || self.mappings_file.clone().map(Source::File);
        let configmap = || self.mappings_configmap.clone().map(Source::ConfigMap);
        let text = self.project_mappings.clone().map(Source::Static);
        text.or_else(file).or_else(configmap)
    }

    /// The mapping source given, for a command that needs one: without it, a [`Usage`] error,
    /// before any cluster is asked anything.
    pub fn required(&self) -> Result<crate::source::Source, Usage> {
        let usage = "give one of --project-mappings, --mappings-file or --mappings-configmap";
        self.given().ok_or_else(|| Usage(usage.into()))
    }
}

/// A usage error found after parsing, which [`main`] reports as clap reports one: on stderr,
/// exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// How a command that reports findings prints them (`audit`, `check`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Lines for a person.
    #[default]
    Table,
    /// JSON for scripts (each command documents its shape).
    Json,
}

/// Parses the command line and runs the command. Exit status 0 on success, 1 on any refusal
/// or error (with the reason on stderr), 2 on a usage error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Rewrite(args) => rewrite::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Derive(args) => derive::run(args),
        Command::Check(args) => check::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::MapProjects(args) => map_projects::run(args),
        Command::ExportPolicy(args) => export_policy::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if e.is::<Usage>() { 2 } else { 1 })
        }
    }
}

/// A repeatable flag's values, each trimmed, blanks dropped.
pub fn trimmed<C: FromIterator<String>>(values: &[String]) -> C {
    let values = values.iter().map(|v| v.trim().to_string());
    values.filter(|v| !v.is_empty()).collect()
}

/// A cluster ID flag, `None` when empty (unknown).
pub fn known_cluster_id(cluster_id: &Option<String>) -> Option<&str> {
    cluster_id.as_deref().filter(|c| !c.is_empty())
}

/// A Rancher cluster ID (`c-m-4kq8z9rt`, `local`): one DNS-1123 label. Empty means unknown
/// (the kustomize install's placeholder, an unset chart value): see [`known_cluster_id`].
pub fn parse_cluster_id(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    crate::mapping::check_label(s)
        .map(|()| s.to_string())
        .map_err(|e| {
            format!(
                "not a Rancher cluster ID (a DNS-1123 label such as c-m-4kq8z9rt or local): {e}"
            )
        })
}

/// A duration as `N` followed by `s`, `m`, `h` or `d` (`90s`, `10m`, `365d`), at least a second.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("expected a duration such as 90s, 10m, 12h or 365d, got {s:?}");
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = s.split_at_checked(split).ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|&s| (1..=100 * 365 * 86_400).contains(&s))
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_secs(seconds))
}
