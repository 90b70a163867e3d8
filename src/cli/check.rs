//! `rancher-remap check`: the `/validate` checks offline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::input;
use crate::rewrite::describe;
use crate::validate::{check, is_validated};

/// Check ClusterPairs and mapping ConfigMaps as the validating webhook would (the rules:
/// docs/behaviour.md).
///
/// Prints every finding as `FILE: Kind ns/name: error|warning: FIELD.PATH: message`, and `ok`
/// for objects without findings. Other objects are skipped (said on stderr). Exit status 1 when
/// any error is found, or when no file holds an object to check.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to check (YAML or JSON, several documents or a List each); `-` is stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// The Rancher ID of the destination cluster the mapping ConfigMap is for (as `derive`
    /// prints it): a table whose sources name it (reversed) or whose destinations name another
    /// cluster is refused, as the server there refuses it. ClusterPairs are not checked
    /// against it (the destination holds a reversed pair of its own).
    #[arg(long, env = "RANCHER_REMAP_CLUSTER_ID", value_name = "ID", value_parser = super::parse_cluster_id)]
    pub cluster_id: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (mut checked, mut errors, mut warnings) = (0usize, 0usize, 0usize);
    let mut out = String::new();
    for file in &args.files {
        let name = file.display();
        for obj in input::read_objects(std::slice::from_ref(file))? {
            let object = describe(&obj);
            if !is_validated(&obj) {
                eprintln!("{name}: {object}: skipped (not a ClusterPair or a ConfigMap labelled rancher-remap.io/mappings)");
                continue;
            }
            checked += 1;
            let report = check(&obj, now, super::known(&args.cluster_id));
            for f in &report.errors {
                out.push_str(&format!("{name}: {object}: error: {f}\n"));
            }
            for f in &report.warnings {
                out.push_str(&format!("{name}: {object}: warning: {f}\n"));
            }
            if report.errors.is_empty() && report.warnings.is_empty() {
                out.push_str(&format!("{name}: {object}: ok\n"));
            }
            errors += report.errors.len();
            warnings += report.warnings.len();
        }
    }
    print!("{out}");
    if checked == 0 {
        anyhow::bail!("no ClusterPair or mapping ConfigMap found in the files given");
    }
    eprintln!("{checked} checked: {errors} errors, {warnings} warnings");
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
